package order

import (
	"context"
	"errors"
	"time"
)

// Event is one status change of an order, read from the append-only event log that is written in the same
// transaction as the change. Its ID grows with every event: clients resume a stream from the last ID seen.
type Event struct {
	ID      int64     `json:"event_id"`
	OrderID string    `json:"order_id"`
	Status  Status    `json:"status"`
	At      time.Time `json:"at"`
	// Cursor is where a stream resumes after this event (the SSE event id): the event's place in the stream
	// that delivered it. Zero means the event's ID.
	Cursor int64 `json:"-"`
}

// ResumeID is the id a stream client resumes from after e (Last-Event-ID).
func (e Event) ResumeID() int64 {
	if e.Cursor != 0 {
		return e.Cursor
	}
	return e.ID
}

// ErrSlowSubscriber ends a stream whose client does not keep up; it reconnects with its last event ID and
// misses nothing, because the log is the source of truth.
var ErrSlowSubscriber = errors.New("subscriber too slow; reconnect with Last-Event-ID")

// StreamRequest is what a client asks to follow.
type StreamRequest struct {
	OrderID string // "" for every order (staff)
	// After is the last event ID the client has; 0 for none. FromNow skips history when After is 0.
	After   int64
	FromNow bool
}

// EventStreams delivers the event log to stream clients (order/eventstream serves it from JetStream). It is the
// seam between the stream endpoint and the event stream.
type EventStreams interface {
	// Ready reports an error until streams can be served.
	Ready(ctx context.Context) error
	// Stream sends the requested events in ID order: first those in the log after req.After, then live ones,
	// with no gap and no repeat. It calls idle every heartbeat while nothing happens, and returns when ctx
	// ends, send or idle fail, ErrSlowSubscriber when the client does not keep up, or (for one order) nil
	// after a final status.
	Stream(ctx context.Context, req StreamRequest, heartbeat time.Duration, send func(Event) error, idle func() error) error
}
