package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/gateway/stream"
	"github.com/pizzajoint/mesh/order/orderapi"
)

// MakeStreamHandler mounts the event streams, relayed from the order service through the mesh (gateway/stream):
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
func MakeStreamHandler(mux *http.ServeMux, e Endpoints, auth *staff.Auth, orderURL *url.URL, rt http.RoundTripper,
	options ...edge.Option) (endStreams func()) {
	o := edge.Apply(options)
	shutdown, endStreams := context.WithCancel(context.Background())
	customer := stream.NewRelay(orderURL, rt, func(r *http.Request) string { return orderapi.RouteOrderEvents.Path(r.PathValue("id")) })
	mux.HandleFunc("GET /pizza/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.AcquireStream(EncodeError, w, r) // before any work: a client over the cap costs nothing
		if !ok {
			return
		}
		defer release()
		serveStream(o, w, r, e.TrackEventsEndpoint,
			eventsRequest{ID: r.PathValue("id"), Token: trackingToken(r)}, customer, shutdown)
	})

	all := stream.NewRelay(orderURL, rt, func(*http.Request) string { return orderapi.RouteEvents.Path("") })
	mux.Handle("GET /staff/api/events", requireStaff(o, auth, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := o.AcquireStream(EncodeError, w, r)
		if !ok {
			return
		}
		defer release()
		serveStream(o, w, r, e.StaffEventsEndpoint, eventsRequest{}, all, shutdown)
	})))
	return endStreams
}

// serveStream calls stream with req, whose Relay relays the order service's stream until the client leaves,
// order ends it, its lifetime is over, or the gateway shuts down. An error before the relay began (no
// token, order unreachable) is answered as JSON; an error answer of order's was relayed as it came.
func serveStream(o edge.Limits, w http.ResponseWriter, r *http.Request, call endpoint.Endpoint, req eventsRequest,
	relay http.Handler, shutdown context.Context) {
	req.Relay = func(ctx context.Context) error {
		return stream.Relay(ctx, w, r, relay, shutdown, o.Lifetime())
	}
	if _, err := call(r.Context(), req); err != nil && !errors.As(err, new(*stream.RelayedError)) {
		EncodeError(r.Context(), err, w)
	}
}
