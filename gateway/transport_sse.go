package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/sse"
)

// MakeStreamHandler mounts the event streams, relayed from the order service through the mesh:
//
//	GET /pizza/{id}/events?token=…   one order's status changes, for the holder of its tracking token
//	GET /staff/api/events            every order's changes, for signed-in staff
//
// Both resume after Last-Event-ID (header, or last_event_id in the query). Each stream is one call of its
// endpoint (e.TrackEventsEndpoint, e.StaffEventsEndpoint), so it is logged and measured like every call,
// once, when it ends. rt reaches the order service (the sidecar upstream); it must not cap connections,
// since every open stream holds one. options cap open streams and their lifetime.
//
// endStreams ends every relayed stream; give it to the server's RegisterOnShutdown, so a stopping gateway does
// not wait out its shutdown timeout on them. Clients reconnect with their last event ID.
func MakeStreamHandler(mux *http.ServeMux, e Endpoints, staff *StaffAuth, orderURL *url.URL, rt http.RoundTripper,
	options ...Option) (endStreams func()) {
	o := applyOptions(options)
	shutdown, endStreams := context.WithCancel(context.Background())
	relay := func(path func(*http.Request) string) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(orderURL)
				pr.Out.URL.Path = path(pr.In)
				q := url.Values{}
				if v := pr.In.URL.Query().Get("last_event_id"); v != "" {
					q.Set("last_event_id", v)
				}
				pr.Out.URL.RawQuery = q.Encode() // never the tracking token
				pr.Out.Header.Del("Cookie")
				pr.Out.Header.Del("Authorization")
				pr.Out.Header.Set(reqid.Header, reqid.FromContext(pr.In.Context()))
			},
			Transport:      rt,
			FlushInterval:  -1, // every event as soon as it arrives
			ModifyResponse: endWithStream,
			// Called only before anything is written: the endpoint's error is answered like any other.
			ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
				if rs, ok := r.Context().Value(relayKey{}).(*relayState); ok {
					rs.failed = fmt.Errorf("%w: %w", order.ErrUnavailable, err)
				}
			},
		}
	}
	customer := relay(func(r *http.Request) string { return orderapi.RouteOrderEvents.Path(r.PathValue("id")) })
	mux.HandleFunc("GET /pizza/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.acquireStream(w, r) // before any work: a client over the cap costs nothing
		if !ok {
			return
		}
		defer release()
		o.serveStream(w, r, e.TrackEventsEndpoint,
			eventsRequest{ID: r.PathValue("id"), Token: trackingToken(r)}, customer, shutdown)
	})

	all := relay(func(*http.Request) string { return orderapi.RouteEvents.Path("") })
	mux.Handle("GET /staff/api/events", o.requireStaff(staff, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.acquireStream(w, r)
		if !ok {
			return
		}
		defer release()
		o.serveStream(w, r, e.StaffEventsEndpoint, eventsRequest{}, all, shutdown)
	})))
	return endStreams
}

// serveStream calls stream with req, whose Relay relays the order service's stream until the client leaves,
// order ends it, its lifetime is over, or the gateway shuts down. An error before the relay began (no
// token, order unreachable) is answered as JSON; an error answer of order's was relayed as it came.
func (o options) serveStream(w http.ResponseWriter, r *http.Request, stream endpoint.Endpoint, req eventsRequest,
	relay http.Handler, shutdown context.Context) {
	req.Relay = func(ctx context.Context) error {
		end, cancel := context.WithCancel(shutdown)
		if d := o.lifetime(); d > 0 {
			end, cancel = context.WithTimeout(shutdown, d)
		}
		defer cancel()
		rs := &relayState{end: end}
		sse.LiftDeadlines(w)
		relay.ServeHTTP(w, r.WithContext(context.WithValue(ctx, relayKey{}, rs)))
		switch {
		case rs.failed != nil:
			return rs.failed
		case rs.status >= 400:
			return &relayedError{status: rs.status}
		}
		return nil
	}
	if _, err := stream(r.Context(), req); err != nil && !errors.As(err, new(*relayedError)) {
		EncodeError(r.Context(), err, w)
	}
}

// relayState is what the relay of one stream shares with its proxy's hooks.
type relayState struct {
	end    context.Context // done when the stream must end
	status int             // of order's answer
	failed error           // order could not be reached
}

type relayKey struct{}

// relayedError is an error answer of the order service to a stream, already passed on to the client as it
// came; its status makes its outcome.
type relayedError struct{ status int }

func (e *relayedError) Error() string {
	return "the order service answered the stream with " + strconv.Itoa(e.status)
}

// endWithStream makes the relayed body end when the stream's end context is done. Ending the body, rather
// than cancelling the request, lets the proxy finish the response properly (a cancelled request makes it
// abort the connection), so the client sees a clean end and reconnects with its Last-Event-ID.
func endWithStream(res *http.Response) error {
	rs, ok := res.Request.Context().Value(relayKey{}).(*relayState)
	if !ok {
		return nil
	}
	rs.status = res.StatusCode
	b := &endingBody{ReadCloser: res.Body}
	b.stop = context.AfterFunc(rs.end, func() {
		b.ended.Store(true)
		_ = b.ReadCloser.Close() // unblocks a Read waiting for the next event
	})
	res.Body = b
	return nil
}

type endingBody struct {
	io.ReadCloser
	ended atomic.Bool
	stop  func() bool
}

func (b *endingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.ended.Load() {
		return n, io.EOF
	}
	return n, err
}

func (b *endingBody) Close() error {
	b.stop()
	return b.ReadCloser.Close()
}

// StreamTransport returns a transport for relaying streams: keep-alive, bounded dialing and waiting for the
// response headers, and no cap on connections (each open stream holds one).
func StreamTransport(base *http.Transport) *http.Transport {
	t := base.Clone()
	t.MaxConnsPerHost = 0
	t.MaxIdleConnsPerHost = 16
	t.DisableCompression = true
	return t
}
