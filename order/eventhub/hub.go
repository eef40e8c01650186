// Package eventhub delivers the order event log to stream clients: one Hub per process polls the log and fans
// new events out to its subscribers, so open streams cost one query per poll.
package eventhub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/pizzajoint/mesh/order"
)

var _ order.EventStreams = (*Hub)(nil)

// Hub follows the event log for one process and fans new events out to its streams, so a thousand open
// streams cost one query per poll, not a thousand. Every replica runs its own Hub on the shared log, so any
// replica can serve any stream.
type Hub struct {
	log      order.EventLog
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
	ch      chan order.Event
	gone    chan struct{} // closed when the hub drops a slow subscriber
}

// subscriberBuffer is how far a stream may lag behind before it is dropped.
const subscriberBuffer = 256

// New returns a Hub polling log every interval.
func New(log order.EventLog, interval time.Duration, logger *slog.Logger) *Hub {
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
		events, err := h.log.Events(ctx, order.EventQuery{After: cursor, Limit: 500})
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
func (h *Hub) settled(cursor int64, events []order.Event) []order.Event {
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

func (h *Hub) publish(events []order.Event) {
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
	s := &subscription{orderID: orderID, ch: make(chan order.Event, subscriberBuffer), gone: make(chan struct{})}
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

// Stream sends the requested events in ID order: first those in the log after req.After, then live ones,
// with no gap and no repeat. It calls idle every heartbeat while nothing happens, and returns when ctx ends,
// send or idle fail, or (for one order) after a final status.
func (h *Hub) Stream(ctx context.Context, req order.StreamRequest, heartbeat time.Duration, send func(order.Event) error, idle func() error) error {
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
		events, err := h.log.Events(ctx, order.EventQuery{OrderID: req.OrderID, After: last, UpTo: upTo, Limit: 500})
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
			return order.ErrSlowSubscriber
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
