// Package stream relays event streams from the order service through the mesh to the gateway's clients:
// every event as soon as it arrives, never the client's credentials, and an end (the stream's lifetime, the
// gateway's shutdown) that the client sees as a clean one, so it resumes with its Last-Event-ID.
package stream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/sse"
)

// NewRelay returns the relay of the order service's stream at path(r) on orderURL, through rt (the sidecar
// upstream; it must not cap connections, since every open stream holds one). It serves only within Relay.
func NewRelay(orderURL *url.URL, rt http.RoundTripper, path func(*http.Request) string) http.Handler {
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

// Relay relays the order service's stream to w with relay (from NewRelay) until the client leaves (ctx),
// order ends it, lifetime is over (0: no end of its own), or shutdown is done. It returns an error if order
// could not be reached (nothing was written) or answered with an error, which was relayed as it came
// (a *RelayedError).
func Relay(ctx context.Context, w http.ResponseWriter, r *http.Request, relay http.Handler, shutdown context.Context,
	lifetime time.Duration) error {
	end, cancel := context.WithCancel(shutdown)
	if lifetime > 0 {
		end, cancel = context.WithTimeout(shutdown, lifetime)
	}
	defer cancel()
	rs := &relayState{end: end}
	sse.LiftDeadlines(w)
	relay.ServeHTTP(w, r.WithContext(context.WithValue(ctx, relayKey{}, rs)))
	switch {
	case rs.failed != nil:
		return rs.failed
	case rs.status >= 400:
		return &RelayedError{Status: rs.status}
	}
	return nil
}

// relayState is what the relay of one stream shares with its proxy's hooks.
type relayState struct {
	end    context.Context // done when the stream must end
	status int             // of order's answer
	failed error           // order could not be reached
}

type relayKey struct{}

// RelayedError is an error answer of the order service to a stream, already passed on to the client as it
// came; its status makes its outcome.
type RelayedError struct{ Status int }

func (e *RelayedError) Error() string {
	return "the order service answered the stream with " + strconv.Itoa(e.Status)
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

// Transport returns a transport for relaying streams: keep-alive, bounded dialing and waiting for the
// response headers, and no cap on connections (each open stream holds one).
func Transport(base *http.Transport) *http.Transport {
	t := base.Clone()
	t.MaxConnsPerHost = 0
	t.MaxIdleConnsPerHost = 16
	t.DisableCompression = true
	return t
}
