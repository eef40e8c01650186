package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/sse"
)

// Heartbeat keeps idle streams (and the proxies on their path) alive, and finds clients that are gone.
const Heartbeat = 15 * time.Second

// MakeSSEHandler mounts the event streams on mux. They are plain net/http handlers: go-kit's transport
// answers once per request and has no notion of a stream.
//
//	GET /orders/{id}/events   one order's events (history, then live) until DELIVERED or CANCELLED
//	GET /events               every order's events from now on (staff); with Last-Event-ID, what was missed
//
// Both resume after the Last-Event-ID header. shutdown ends every stream when the server stops, so clients
// reconnect elsewhere instead of holding the shutdown up.
func MakeSSEHandler(mux *http.ServeMux, hub *order.Hub, shutdown context.Context) {
	mux.HandleFunc("GET /orders/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !order.ValidID(id) {
			EncodeError(r.Context(), order.ErrNotFound, w)
			return
		}
		serveStream(w, r, hub, shutdown, order.StreamRequest{OrderID: id})
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		serveStream(w, r, hub, shutdown, order.StreamRequest{FromNow: true})
	})
}

func serveStream(w http.ResponseWriter, r *http.Request, hub *order.Hub, shutdown context.Context, req order.StreamRequest) {
	after, err := sse.LastEventID(r)
	if err != nil {
		EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusBadRequest, Field: "Last-Event-ID", Msg: err.Error()}, w)
		return
	}
	req.After = after
	if err := hub.Ready(r.Context()); err != nil {
		EncodeError(r.Context(), order.ErrUnavailable, w)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(shutdown, cancel)
	defer stop()

	stream, err := sse.Start(w, 10*time.Second)
	if err != nil {
		return
	}
	err = hub.Stream(ctx, req, Heartbeat,
		func(e order.Event) error {
			data, err := json.Marshal(e)
			if err != nil {
				return err
			}
			return stream.Event(e.ID, "order", data)
		},
		func() error { return stream.Comment("keep-alive") })
	if errors.Is(err, order.ErrSlowSubscriber) {
		_ = stream.Comment("too slow: reconnect with Last-Event-ID")
	}
}
