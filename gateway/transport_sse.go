package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
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
// since every open stream holds one. shutdown ends every relayed stream when the gateway stops, so it does
// not wait out its shutdown timeout on them; clients reconnect with their last event ID. options cap open
// streams and their lifetime.
func MakeStreamHandler(mux *http.ServeMux, e Endpoints, staff *StaffAuth, orderURL *url.URL, rt http.RoundTripper,
	shutdown context.Context, options ...Option) {
	o := applyOptions(options)
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
				if failed, ok := r.Context().Value(relayFailedKey{}).(*error); ok {
					*failed = fmt.Errorf("%w: %w", order.ErrUnavailable, err)
				}
			},
		}
	}
	customer := relay(func(r *http.Request) string { return "/orders/" + url.PathEscape(r.PathValue("id")) + "/events" })
	mux.HandleFunc("GET /pizza/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.acquireStream(w, r) // before any work: a client over the cap costs nothing
		if !ok {
			return
		}
		defer release()
		o.serveStream(w, r, e.TrackEventsEndpoint,
			eventsRequest{ID: r.PathValue("id"), Token: trackingToken(r)}, customer, shutdown)
	})

	all := relay(func(*http.Request) string { return "/events" })
	mux.Handle("GET /staff/api/events", staff.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.acquireStream(w, r)
		if !ok {
			return
		}
		defer release()
		o.serveStream(w, r, e.StaffEventsEndpoint, eventsRequest{}, all, shutdown)
	})))
}

// serveStream calls stream with req, whose Relay relays the order service's stream until the client leaves,
// order ends it, its lifetime is over, or the gateway shuts down. An error before the relay began (no
// token, order unreachable) is answered as JSON.
func (o options) serveStream(w http.ResponseWriter, r *http.Request, stream endpoint.Endpoint, req eventsRequest,
	relay http.Handler, shutdown context.Context) {
	req.Relay = func(ctx context.Context) error {
		end, cancel := context.WithCancel(shutdown)
		if d := o.lifetime(); d > 0 {
			end, cancel = context.WithTimeout(shutdown, d)
		}
		defer cancel()
		var failed error
		ctx = context.WithValue(context.WithValue(ctx, streamEndKey{}, end), relayFailedKey{}, &failed)
		sse.LiftDeadlines(w)
		relay.ServeHTTP(w, r.WithContext(ctx))
		return failed
	}
	if _, err := stream(r.Context(), req); err != nil {
		EncodeError(r.Context(), err, w)
	}
}

// relayFailedKey holds where the relay notes that it could not reach the order service.
type relayFailedKey struct{}

type streamEndKey struct{}

// endWithStream makes the relayed body end when the stream's end context is done. Ending the body, rather
// than cancelling the request, lets the proxy finish the response properly (a cancelled request makes it
// abort the connection), so the client sees a clean end and reconnects with its Last-Event-ID.
func endWithStream(res *http.Response) error {
	end, ok := res.Request.Context().Value(streamEndKey{}).(context.Context)
	if !ok {
		return nil
	}
	b := &endingBody{ReadCloser: res.Body}
	b.stop = context.AfterFunc(end, func() {
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
