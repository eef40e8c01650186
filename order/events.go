package order

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Event is one status change of an order, read from the append-only event log that is written in the same
// transaction as the change. Its ID grows with every event: clients resume a stream from the last ID seen.
type Event struct {
	ID      int64     `json:"event_id"`
	OrderID string    `json:"order_id"`
	Status  Status    `json:"status"`
	At      time.Time `json:"at"`
}

// EventQuery selects events After < ID ≤ UpTo (UpTo 0: no upper bound), of one order when OrderID is set, in
// ID order, at most Limit of them.
type EventQuery struct {
	OrderID     string
	After, UpTo int64
	Limit       int
}

// EventLog reads the event log. mysqlstore.Store implements it.
type EventLog interface {
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	LastEventID(ctx context.Context) (int64, error)
	// TransactionBound is the longest a transaction that writes an event can stay open, enforced by the
	// writer: IDs are taken at insert but seen at commit, so a gap in IDs is either a commit still to come
	// (within the bound) or a rollback.
	TransactionBound() time.Duration
}

// ErrSlowSubscriber ends a stream whose client does not keep up; it reconnects with its last event ID and
// misses nothing, because the log is the source of truth.
var ErrSlowSubscriber = errors.New("subscriber too slow; reconnect with Last-Event-ID")

// Hub follows the event log for one process and fans new events out to its streams, so a thousand open
// streams cost one query per poll, not a thousand. Every replica runs its own Hub on the shared log, so any
// replica can serve any stream.
type Hub struct {
	log      EventLog
	logger   *slog.Logger
	interval time.Duration
	// settle is how long a gap in event IDs may be an uncommitted transaction, counted from when the hub first
	// saw an event past it: the missing event's transaction took its ID before that event's did, so it was
	// open then, and the writer ends it within the log's TransactionBound. Past settle the gap is a rollback
	// and is skipped.
	settle time.Duration
	now    func() time.Time
	// gapAfter and gapSeen are the cursor at which the oldest open gap starts and when it was first seen. Only
	// Run's goroutine touches them.
	gapAfter int64
	gapSeen  time.Time

	mu     sync.Mutex
	ready  bool
	cursor int64 // every event ≤ cursor has been delivered (or its gap skipped)
	subs   map[*subscription]struct{}
}

type subscription struct {
	orderID string
	ch      chan Event
	gone    chan struct{} // closed when the hub drops a slow subscriber
}

// subscriberBuffer is how far a stream may lag behind before it is dropped.
const subscriberBuffer = 256

// NewHub returns a Hub polling log every interval.
func NewHub(log EventLog, interval time.Duration, logger *slog.Logger) *Hub {
	// One more interval covers a commit that lands just after a poll; a second covers clock granularity.
	settle := log.TransactionBound() + interval + time.Second
	return &Hub{log: log, logger: logger.With("component", "eventhub"), interval: interval, settle: settle,
		now: time.Now, gapAfter: -1, subs: map[*subscription]struct{}{}}
}

// Ready reports an error until the hub knows where the log ends.
func (h *Hub) Ready(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ready {
		return errors.New("event hub not started")
	}
	return nil
}

// Run polls the log until ctx ends. It starts at the log's current end: streams replay older events themselves.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		if err := h.poll(ctx); err != nil && ctx.Err() == nil {
			h.logger.Warn("reading the event log", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Hub) poll(ctx context.Context) error {
	h.mu.Lock()
	ready, cursor := h.ready, h.cursor
	h.mu.Unlock()
	if !ready {
		last, err := h.log.LastEventID(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.cursor, h.ready = last, true
		h.mu.Unlock()
		return nil
	}
	for {
		events, err := h.log.Events(ctx, EventQuery{After: cursor, Limit: 500})
		if err != nil {
			return err
		}
		settled := h.settled(cursor, events)
		h.publish(settled)
		if len(settled) < 500 {
			return nil
		}
		cursor = settled[len(settled)-1].ID
	}
}

// settled returns the prefix of events that can be published: contiguous IDs, or gaps first seen longer ago
// than settle.
func (h *Hub) settled(cursor int64, events []Event) []Event {
	for i, e := range events {
		if e.ID != cursor+1 {
			now := h.now()
			if h.gapAfter != cursor {
				h.gapAfter, h.gapSeen = cursor, now
			}
			if now.Sub(h.gapSeen) < h.settle {
				return events[:i] // an earlier ID may still commit: wait for it
			}
			h.logger.Info("event IDs skipped as rolled back", "from", cursor+1, "to", e.ID-1)
		}
		cursor = e.ID
	}
	return events
}

func (h *Hub) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		for s := range h.subs {
			if s.orderID != "" && s.orderID != e.OrderID {
				continue
			}
			select {
			case s.ch <- e:
			default:
				delete(h.subs, s)
				close(s.gone)
			}
		}
	}
	h.cursor = events[len(events)-1].ID
}

func (h *Hub) subscribe(orderID string) (*subscription, int64) {
	s := &subscription{orderID: orderID, ch: make(chan Event, subscriberBuffer), gone: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	return s, h.cursor
}

func (h *Hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// StreamRequest is what a client asks to follow.
type StreamRequest struct {
	OrderID string // "" for every order (staff)
	// After is the last event ID the client has; 0 for none. FromNow skips history when After is 0.
	After   int64
	FromNow bool
}

// Stream sends the requested events in ID order: first those in the log after req.After, then live ones,
// with no gap and no repeat. It calls idle every heartbeat while nothing happens, and returns when ctx ends,
// send or idle fail, or (for one order) after a final status.
func (h *Hub) Stream(ctx context.Context, req StreamRequest, heartbeat time.Duration, send func(Event) error, idle func() error) error {
	if err := h.Ready(ctx); err != nil {
		return err
	}
	sub, upTo := h.subscribe(req.OrderID)
	defer h.unsubscribe(sub)

	last := req.After
	if req.FromNow && last == 0 {
		last = upTo
	}
	// Replay what the log has up to where the live feed starts.
	for last < upTo {
		events, err := h.log.Events(ctx, EventQuery{OrderID: req.OrderID, After: last, UpTo: upTo, Limit: 500})
		if err != nil {
			return err
		}
		for _, e := range events {
			if err := send(e); err != nil {
				return err
			}
			if req.OrderID != "" && e.Status.Final() {
				return nil
			}
		}
		if len(events) < 500 {
			break
		}
		last = events[len(events)-1].ID
	}

	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.gone:
			return ErrSlowSubscriber
		case <-t.C:
			if err := idle(); err != nil {
				return err
			}
		case e := <-sub.ch:
			if e.ID <= req.After {
				continue // the client has it already
			}
			if err := send(e); err != nil {
				return err
			}
			if req.OrderID != "" && e.Status.Final() {
				return nil
			}
		}
	}
}
