package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/sse"
)

// Heartbeat keeps idle streams (and the proxies on their path) alive, and finds clients that are gone.
const Heartbeat = 15 * time.Second

// MakeSSEHandler mounts the event streams on mux, served by stream (order.MakeStreamEndpoint, so through the
// same endpoint middleware as every call). They are plain net/http handlers: go-kit's transport answers once
// per request and has no notion of a stream.
//
//	orderapi.RouteOrderEvents   one order's events (history, then live) until DELIVERED or CANCELLED
//	orderapi.RouteEvents        every order's events from now on (staff); with Last-Event-ID, what was missed
//
// Both resume after the Last-Event-ID header. endStreams ends every stream; give it to the server's
// RegisterOnShutdown, so clients reconnect elsewhere instead of holding the shutdown up.
func MakeSSEHandler(mux *http.ServeMux, stream endpoint.Endpoint) (endStreams func()) {
	shutdown, endStreams := context.WithCancel(context.Background())
	mux.HandleFunc(orderapi.RouteOrderEvents.String(), func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !order.ValidID(id) {
			EncodeError(r.Context(), order.ErrNotFound, w)
			return
		}
		serveStream(w, r, stream, shutdown, order.StreamRequest{OrderID: id})
	})
	mux.HandleFunc(orderapi.RouteEvents.String(), func(w http.ResponseWriter, r *http.Request) {
		serveStream(w, r, stream, shutdown, order.StreamRequest{FromNow: true})
	})
	return endStreams
}

func serveStream(w http.ResponseWriter, r *http.Request, stream endpoint.Endpoint, shutdown context.Context, req order.StreamRequest) {
	after, err := sse.LastEventID(r)
	if err != nil {
		EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusBadRequest, Field: "Last-Event-ID", Msg: err.Error()}, w)
		return
	}
	req.After = after
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(shutdown, cancel)
	defer stop()

	sink := &sseSink{w: w}
	_, err = stream(ctx, order.StreamEventsRequest{StreamRequest: req, Heartbeat: Heartbeat, Sink: sink})
	switch {
	case err == nil:
	case sink.events == nil: // refused before it began: an answer like any other
		EncodeError(r.Context(), err, w)
	case errors.Is(err, order.ErrSlowSubscriber):
		_ = sink.events.Comment("too slow: reconnect with Last-Event-ID")
	}
}

// A stream lasts as long as its client wants: the endpoint middleware gives it no deadline.
var _ kitmw.LongLived = order.StreamEventsRequest{}

// sseSink writes a stream's events as server-sent events.
type sseSink struct {
	w      http.ResponseWriter
	events *sse.Writer // set by Open
}

var _ order.EventSink = (*sseSink)(nil)

func (s *sseSink) Open() error {
	var err error
	s.events, err = sse.Start(s.w, 10*time.Second)
	return err
}

func (s *sseSink) Send(e order.Event) error {
	data, err := jsonv2.Marshal(e)
	if err != nil {
		return err
	}
	return s.events.Event(e.ResumeID(), "order", data)
}

func (s *sseSink) KeepAlive() error { return s.events.Comment("keep-alive") }
