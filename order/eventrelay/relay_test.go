package eventrelay_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/eventrelay"
	"github.com/pizzajoint/mesh/order/eventstream"
	"github.com/pizzajoint/mesh/order/mysqlstore/storetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

type rig struct {
	db   storetest.Fixture
	nats *natstest.Server
	js   jetstream.JetStream
}

func newRig(t *testing.T) rig {
	t.Helper()
	r := rig{db: storetest.New(t), nats: natstest.Start(t, "")}
	var err error
	if r.js, err = jetstream.New(r.nats.Connect()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := eventstream.Ensure(ctx, r.js, 1); err != nil {
		t.Fatal(err)
	}
	return r
}

// relay starts a relay, stopped at the test's end; counts get its published and duplicate counts.
func (r rig) relay(t *testing.T, outbox eventrelay.Outbox, counts *relayCounts) *eventrelay.Relay {
	t.Helper()
	if outbox == nil {
		outbox = r.db.Store
	}
	if counts == nil {
		counts = &relayCounts{}
	}
	cfg := eventrelay.DefaultConfig
	cfg.Sweep = 100 * time.Millisecond
	cfg.Timeout = time.Second // a publish to a stopped server fails within the outage below
	rl := eventrelay.New(cfg, outbox, eventstream.NewPublisher(r.js), eventrelay.Metrics{
		Published: func() { counts.published.Add(1) }, Duplicates: func() { counts.duplicates.Add(1) },
	}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return rl
}

type relayCounts struct{ published, duplicates atomic.Int64 }

// placeAndMove creates n orders and moves each through ACCEPTED and BAKING.
func (r rig) placeAndMove(t *testing.T, n int) {
	t.Helper()
	if err := placeAndMove(r.db.Service, n); err != nil {
		t.Fatal(err)
	}
}

func placeAndMove(svc order.Service, n int) error {
	ctx := context.Background()
	for i := range n {
		created, err := svc.CreateOrder(ctx, order.NewOrder{
			Customer: order.Customer{Name: fmt.Sprintf("Customer %d", i), Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
			Items:    []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 1}},
		})
		if err != nil {
			return err
		}
		for _, to := range []order.Status{order.StatusAccepted, order.StatusBaking} {
			if _, err := svc.ChangeStatus(ctx, created.Order.ID, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// awaitRelayed waits until no event is left unrelayed.
func (r rig) awaitRelayed(t *testing.T) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "every event relayed", func() error {
		var n int
		if err := r.db.Root.QueryRow(`SELECT COUNT(*) FROM order_events WHERE relayed = FALSE`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d events unrelayed", n)
		}
		return nil
	})
}

// logEvents is the event log in ID order.
func logEvents(t *testing.T, root *sql.DB) []order.Event {
	t.Helper()
	rows, err := root.Query(`SELECT id, order_id, status FROM order_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var events []order.Event
	for rows.Next() {
		var e order.Event
		if err := rows.Scan(&e.ID, &e.OrderID, &e.Status); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	return events
}

// streamEvents is every message in the stream, in stream order.
func streamEvents(t *testing.T, js jetstream.JetStream) []order.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, eventstream.Name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var events []order.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		var e order.Event
		if err := jsonv2.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		if m.Subject != eventstream.Subject(e.OrderID) {
			t.Errorf("event %d on subject %s, want %s", e.ID, m.Subject, eventstream.Subject(e.OrderID))
		}
		events = append(events, e)
	}
	return events
}

// checkStreamHoldsTheLog: every event of the log is in the stream exactly once, and each order's events are
// in ID order.
func checkStreamHoldsTheLog(t *testing.T, log, stream []order.Event) {
	t.Helper()
	seen := map[int64]int{}
	last := map[string]int64{}
	for _, e := range stream {
		seen[e.ID]++
		if e.ID < last[e.OrderID] {
			t.Errorf("order %s: event %d after event %d", e.OrderID, e.ID, last[e.OrderID])
		}
		last[e.OrderID] = e.ID
	}
	for _, e := range log {
		if seen[e.ID] != 1 {
			t.Errorf("event %d (%s %s) is in the stream %d times, want once", e.ID, e.OrderID, e.Status, seen[e.ID])
		}
		delete(seen, e.ID)
	}
	for id, n := range seen {
		t.Errorf("the stream holds event %d (%d times), which is not in the log", id, n)
	}
	if len(stream) != len(log) {
		t.Errorf("stream holds %d messages, the log %d events", len(stream), len(log))
	}
}

// Two relays racing over one outbox, while orders are written: the stream holds each event once, each order's
// in order. Seen red with the publisher's message ID removed: "event 7 … is in the stream 2 times".
func TestTwoRelaysRacingStoreEachEventOnce(t *testing.T) {
	r := newRig(t)
	var a, b relayCounts
	ra, rb := r.relay(t, nil, &a), r.relay(t, nil, &b)
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			defer ra.Nudge()
			defer rb.Nudge()
			return placeAndMove(r.db.Service, 10)
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	r.awaitRelayed(t)
	log := logEvents(t, r.db.Root)
	if len(log) != 4*10*3 {
		t.Fatalf("log holds %d events, want %d", len(log), 4*10*3)
	}
	checkStreamHoldsTheLog(t, log, streamEvents(t, r.js))
	t.Logf("relay a: %d published, %d duplicates; relay b: %d published, %d duplicates",
		a.published.Load(), a.duplicates.Load(), b.published.Load(), b.duplicates.Load())
}

// failingMarks is the real outbox, except that marking fails: a relay that dies between its publishes and its
// bookkeeping.
type failingMarks struct {
	eventrelay.Outbox
	published atomic.Int64
}

func (f *failingMarks) MarkRelayed(ctx context.Context, ids []int64) error {
	f.published.Add(int64(len(ids)))
	return errors.New("killed before marking")
}

// A relay that published a batch but never marked it: the next relay publishes the batch again, and the stream
// drops every one of them. Seen red with the publisher's message ID removed: each event in the stream twice.
func TestRelayKilledBeforeMarkingLeavesNoDuplicate(t *testing.T) {
	r := newRig(t)
	r.placeAndMove(t, 5)
	dying := &failingMarks{Outbox: r.db.Store}
	r.relay(t, dying, nil)
	testkit.Eventually(t, 30*time.Second, "the dying relay published the log", func() error {
		if n := dying.published.Load(); n < 15 {
			return fmt.Errorf("%d published", n)
		}
		return nil
	})
	var next relayCounts
	r.relay(t, nil, &next)
	r.awaitRelayed(t)
	checkStreamHoldsTheLog(t, logEvents(t, r.db.Root), streamEvents(t, r.js))
	if got := next.duplicates.Load(); got != 15 {
		t.Errorf("the next relay saw %d duplicates, want the 15 the dying relay published", got)
	}
}

// collect follows a stream until it ends or wants are in, whichever is first.
func collect(ctx context.Context, s order.EventStreams, req order.StreamRequest, want int) ([]order.Event, error) {
	var (
		mu  sync.Mutex
		got []order.Event
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := s.Stream(ctx, req, time.Second, func(e order.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		if len(got) == want {
			cancel()
		}
		return nil
	}, func() error { return nil })
	if errors.Is(err, context.Canceled) && len(got) == want {
		err = nil
	}
	return got, err
}

func statuses(events []order.Event) []order.Status {
	var s []order.Status
	for _, e := range events {
		s = append(s, e.Status)
	}
	return s
}

// A transaction that commits 5 s after a later event ID was committed and relayed: its event is still relayed,
// and a customer's stream and a staff stream both get it, after the later one (the order it committed in). The
// poller this replaces skipped such an event once it was older than its 2 s gap rule. Seen red with Unrelayed
// reading only past the highest ID relayed so far: the late event never reached either stream.
func TestLateCommitIsStreamed(t *testing.T) {
	r := newRig(t)
	rl := r.relay(t, nil, nil)
	ctx := context.Background()
	early, err := r.db.Service.CreateOrder(ctx, order.NewOrder{
		Customer: order.Customer{Name: "Early", Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
		Items:    []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.awaitRelayed(t)
	streams := eventstream.NewStreams(r.js)

	staff := make(chan []order.Event, 1)
	go func() {
		got, err := collect(ctx, streams, order.StreamRequest{FromNow: true}, 2)
		if err != nil {
			t.Errorf("staff stream: %v", err)
		}
		staff <- got
	}()
	time.Sleep(200 * time.Millisecond) // the staff stream is open before anything below happens

	// The late transaction takes its event ID now and commits 5 s later. (It reads nothing, as the store's own
	// writes do not: a locking read of orders would hold the next order's INSERT until it commits.)
	tx, err := r.db.Root.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO order_events (order_id, order_created_at, status, created_at) VALUES (?, ?, 'ACCEPTED', NOW(6))`,
		early.Order.ID, early.Order.CreatedAt); err != nil {
		t.Fatal(err)
	}
	later, err := r.db.Service.CreateOrder(ctx, order.NewOrder{
		Customer: order.Customer{Name: "Later", Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
		Items:    []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rl.Nudge()
	time.Sleep(5 * time.Second)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rl.Nudge()
	r.awaitRelayed(t)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	customer, err := collect(ctx, streams, order.StreamRequest{OrderID: early.Order.ID}, 2)
	if err != nil {
		t.Fatalf("customer stream: %v", err)
	}
	if got, want := statuses(customer), []order.Status{order.StatusCreated, order.StatusAccepted}; !slices.Equal(got, want) {
		t.Errorf("customer stream: %v, want %v", got, want)
	}
	var got []order.Event
	select {
	case got = <-staff:
	case <-ctx.Done():
		t.Fatal("staff stream: no two events")
	}
	if len(got) != 2 || got[0].OrderID != later.Order.ID || got[1].OrderID != early.Order.ID || got[1].Status != order.StatusAccepted {
		t.Errorf("staff stream: %+v, want the later order's CREATED, then the early order's ACCEPTED", got)
	}
	checkStreamHoldsTheLog(t, logEvents(t, r.db.Root), streamEvents(t, r.js))
}

// With the stream's server down, orders are still written (the outbox holds their events); when it is back, the
// relay publishes every one of them once. Seen red with the relay marking events relayed when a publish failed:
// the events written during the outage never reached the stream.
func TestEventsWrittenWhileTheStreamIsDownArriveOnce(t *testing.T) {
	r := newRig(t)
	rl := r.relay(t, nil, nil)
	r.placeAndMove(t, 2)
	r.awaitRelayed(t)
	r.nats.Stop()
	r.placeAndMove(t, 3)
	rl.Nudge()
	time.Sleep(3 * time.Second) // rounds fail meanwhile (each publish times out after 1 s)
	var n int
	if err := r.db.Root.QueryRow(`SELECT COUNT(*) FROM order_events WHERE relayed = FALSE`).Scan(&n); err != nil || n != 9 {
		t.Fatalf("with the stream down, %d events are unrelayed (%v), want the 9 written meanwhile", n, err)
	}
	r.nats.Restart()
	r.awaitRelayed(t)
	checkStreamHoldsTheLog(t, logEvents(t, r.db.Root), streamEvents(t, r.js))
}
