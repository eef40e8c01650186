package gateway

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/sse"
)

// MakeStreamHandler mounts the event streams, relayed from the order service through the mesh:
//
//	GET /pizza/{id}/events?token=…   one order's status changes, for the holder of its tracking token
//	GET /staff/api/events            every order's changes, for signed-in staff
//
// Both resume after Last-Event-ID (header, or last_event_id in the query). rt reaches the order service (the
// sidecar upstream); it must not cap connections, since every open stream holds one. shutdown ends every
// relayed stream when the gateway stops, so it does not wait out its shutdown timeout on them; clients
// reconnect with their last event ID.
func MakeStreamHandler(mux *http.ServeMux, svc Service, staff *StaffAuth, orderURL *url.URL, rt http.RoundTripper, shutdown context.Context) {
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
			Transport:     rt,
			FlushInterval: -1, // every event as soon as it arrives
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, _ error) {
				EncodeError(r.Context(), order.ErrUnavailable, w)
			},
		}
	}
	customer := relay(func(r *http.Request) string { return "/orders/" + url.PathEscape(r.PathValue("id")) + "/events" })
	mux.HandleFunc("GET /pizza/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		if _, err := svc.TrackOrder(r.Context(), r.PathValue("id"), trackingToken(r)); err != nil {
			EncodeError(r.Context(), err, w)
			return
		}
		serveRelay(w, r, customer, shutdown)
	})

	all := relay(func(*http.Request) string { return "/events" })
	mux.Handle("GET /staff/api/events", staff.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveRelay(w, r, all, shutdown)
	})))
}

// serveRelay relays a stream until the client leaves, order ends it, or the gateway shuts down.
func serveRelay(w http.ResponseWriter, r *http.Request, relay http.Handler, shutdown context.Context) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(shutdown, cancel)()
	sse.LiftDeadlines(w)
	relay.ServeHTTP(w, r.WithContext(ctx))
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
