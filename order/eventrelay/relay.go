// Package eventrelay moves the order event log from its outbox in MySQL to the event stream: it publishes the
// unrelayed events in ID order, one at a time, each acknowledged by the stream before the next, and marks them
// relayed only after the acknowledgements.
//
// Every order replica runs a relay, and they need no leader: each publishes an event with its ID as the message
// ID, so whichever is second is dropped by the stream's dedup window. One order's events keep their order in
// the stream under any number of relays, because each relay publishes them in ID order and gets an
// acknowledgement (stored, or already stored) for one before it publishes the next. A relay killed between a
// publish and its mark publishes the event again at its next start, and the server drops it.
package eventrelay

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pizzajoint/mesh/order"
)

// Outbox is the event log's unrelayed part (mysqlstore.Store).
type Outbox interface {
	Unrelayed(ctx context.Context, limit int) ([]order.Event, error)
	MarkRelayed(ctx context.Context, ids []int64) error
}

// Publisher stores one event in the stream and returns once it is acknowledged (eventstream.Publisher).
type Publisher interface {
	Publish(ctx context.Context, e order.Event) (duplicate bool, err error)
}

// Metrics are what the relay reports; nil fields are not reported.
type Metrics struct {
	// Published counts events stored in the stream; Duplicates those the stream already held.
	Published, Duplicates func()
	// Lag is the age of the oldest event the relay has not yet published (0 when it is caught up), set after
	// each round.
	Lag func(time.Duration)
}

// Config shapes a Relay.
type Config struct {
	// Sweep is how often the relay looks for unrelayed events when nothing nudged it: events other replicas
	// wrote but did not relay (they stopped), and commits that came after a round had read past their ID.
	Sweep time.Duration
	// Batch is the most events read in one round.
	Batch int
	// Timeout bounds each call to the outbox or the stream.
	Timeout time.Duration
	// Retry is the first pause after a failed round; it doubles up to Sweep.
	Retry time.Duration
}

// DefaultConfig is what the order service runs with.
var DefaultConfig = Config{Sweep: time.Second, Batch: 256, Timeout: 5 * time.Second, Retry: 50 * time.Millisecond}

// Relay publishes the outbox to the stream.
type Relay struct {
	cfg     Config
	outbox  Outbox
	pub     Publisher
	metrics Metrics
	logger  *slog.Logger
	now     func() time.Time
	nudge   chan struct{}
}

// New returns a Relay; Run starts it.
func New(cfg Config, outbox Outbox, pub Publisher, metrics Metrics, logger *slog.Logger) *Relay {
	return &Relay{cfg: cfg, outbox: outbox, pub: pub, metrics: metrics, logger: logger.With("component", "eventrelay"),
		now: time.Now, nudge: make(chan struct{}, 1)}
}

// Nudge asks for a round now: the service calls it after each commit that wrote an event. It never blocks.
func (r *Relay) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	pause := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-r.nudge:
		}
		err := r.drain(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			pause = min(max(2*pause, r.cfg.Retry), r.cfg.Sweep)
			r.logger.Warn("relaying events failed; retrying", "retry_in", pause, "error", err)
		default:
			pause = r.cfg.Sweep
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(pause)
	}
}

// drain runs rounds until the outbox is empty.
func (r *Relay) drain(ctx context.Context) error {
	for {
		n, err := r.round(ctx)
		if err != nil {
			return err
		}
		if n < r.cfg.Batch {
			return nil
		}
	}
}

// round publishes one batch and marks what was acknowledged. A failed publish ends the batch there: the events
// after it wait, so one order's events never overtake each other.
func (r *Relay) round(ctx context.Context) (int, error) {
	events, err := bounded(ctx, r.cfg.Timeout, func(ctx context.Context) ([]order.Event, error) {
		return r.outbox.Unrelayed(ctx, r.cfg.Batch)
	})
	if err != nil {
		return 0, err
	}
	r.reportLag(events)
	acked := make([]int64, 0, len(events))
	var pubErr error
	for _, e := range events {
		dup, err := bounded(ctx, r.cfg.Timeout, func(ctx context.Context) (bool, error) { return r.pub.Publish(ctx, e) })
		if err != nil {
			pubErr = err
			break
		}
		acked = append(acked, e.ID)
		if dup {
			count(r.metrics.Duplicates)
		} else {
			count(r.metrics.Published)
		}
	}
	if len(acked) > 0 {
		if _, err := bounded(ctx, r.cfg.Timeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, r.outbox.MarkRelayed(ctx, acked)
		}); err != nil {
			// Published but not marked: the next round publishes them again, and the stream drops them.
			return 0, errors.Join(pubErr, err)
		}
	}
	if pubErr != nil {
		return 0, pubErr
	}
	if len(acked) == len(events) {
		r.reportLag(nil)
	}
	return len(events), nil
}

func (r *Relay) reportLag(pending []order.Event) {
	if r.metrics.Lag == nil {
		return
	}
	if len(pending) == 0 {
		r.metrics.Lag(0)
		return
	}
	r.metrics.Lag(max(r.now().Sub(pending[0].At), 0))
}

// bounded calls fn with a deadline of d.
func bounded[T any](ctx context.Context, d time.Duration, fn func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return fn(ctx)
}

func count(f func()) {
	if f != nil {
		f()
	}
}

// Nudging returns store, except that each write that appended an event nudges the relay once it committed, so
// an event is relayed within a round trip of its commit instead of at the next sweep.
func (r *Relay) Nudging(store order.Store) order.Store {
	return nudgingStore{Store: store, nudge: r.Nudge}
}

type nudgingStore struct {
	order.Store
	nudge func()
}

func (s nudgingStore) Create(ctx context.Context, o order.Order, idem order.Idempotency) error {
	err := s.Store.Create(ctx, o, idem)
	if err == nil {
		s.nudge()
	}
	return err
}

func (s nudgingStore) Transition(ctx context.Context, id string, from []order.Status, to order.Status, at time.Time) error {
	err := s.Store.Transition(ctx, id, from, to, at)
	if err == nil {
		s.nudge()
	}
	return err
}
