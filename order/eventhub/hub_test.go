package eventhub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
)

// memLog is an event log in memory; commit makes events visible, possibly out of ID order (as concurrent
// MySQL transactions do).
type memLog struct {
	mu     sync.Mutex
	events map[int64]order.Event
}

// memLogBound is memLog's TransactionBound, as a writer would enforce it.
const memLogBound = 5 * time.Second

func (l *memLog) TransactionBound() time.Duration { return memLogBound }

func (l *memLog) commit(es ...order.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range es {
		l.events[e.ID] = e
	}
}

func (l *memLog) Events(_ context.Context, q order.EventQuery) ([]order.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []order.Event
	for id := q.After + 1; id <= q.After+10000 && len(out) < q.Limit; id++ {
		if q.UpTo > 0 && id > q.UpTo {
			break
		}
		if e, ok := l.events[id]; ok && (q.OrderID == "" || e.OrderID == q.OrderID) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (l *memLog) LastEventID(context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last int64
	for id := range l.events {
		last = max(last, id)
	}
	return last, nil
}

// testPollInterval is the hub's interval in these tests; they call poll themselves.
const testPollInterval = 100 * time.Millisecond

func newTestHub(t *testing.T, log *memLog) (*Hub, *time.Time) {
	t.Helper()
	h := New(log, testPollInterval, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	if err := h.poll(context.Background()); err != nil { // starts at the log's end
		t.Fatal(err)
	}
	return h, &now
}

// waitSubscribed waits until the hub has n streams, so what a test publishes next reaches them live.
func waitSubscribed(t *testing.T, h *Hub, n int) {
	t.Helper()
	testkit.EventuallyEvery(t, 5*time.Second, time.Millisecond, "subscribed", func() error {
		h.mu.Lock()
		got := len(h.subs)
		h.mu.Unlock()
		if got < n {
			return fmt.Errorf("%d streams subscribed, want %d", got, n)
		}
		return nil
	})
}

func ev(id int64, orderID string, s order.Status, at time.Time) order.Event {
	return order.Event{ID: id, OrderID: orderID, Status: s, At: at}
}

// collect runs a stream in the background and returns what it has received so far, on demand.
func collect(t *testing.T, h *Hub, req order.StreamRequest) (func() []int64, context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu  sync.Mutex
		got []int64
	)
	done := make(chan error, 1)
	go func() {
		done <- h.Stream(ctx, req, time.Hour, func(e order.Event) error {
			mu.Lock()
			got = append(got, e.ID)
			mu.Unlock()
			return nil
		}, func() error { return nil })
	}()
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), got...)
	}, cancel, done
}

func waitFor(t *testing.T, got func() []int64, want []int64) {
	t.Helper()
	testkit.EventuallyEvery(t, 5*time.Second, 5*time.Millisecond, "events", func() error {
		g := got()
		if len(g) > len(want) { // more can only be wrong
			t.Fatalf("received %v, want %v", g, want)
		}
		if !equal(g, want) {
			return fmt.Errorf("received %v, want %v", g, want)
		}
		return nil
	})
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStreamReplaysThenFollowsWithoutGapOrRepeat(t *testing.T) {
	log := &memLog{events: map[int64]order.Event{}}
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	log.commit(ev(1, "a", order.StatusCreated, t0), ev(2, "b", order.StatusCreated, t0), ev(3, "a", order.StatusAccepted, t0))
	h, _ := newTestHub(t, log)

	// A customer reconnecting after event 1 of order a: 3 from history, then live ones of a only, to the end.
	got, cancel, done := collect(t, h, order.StreamRequest{OrderID: "a", After: 1})
	defer cancel()
	waitFor(t, got, []int64{3})
	log.commit(ev(4, "b", order.StatusAccepted, t0), ev(5, "a", order.StatusBaking, t0))
	if err := h.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, got, []int64{3, 5})
	log.commit(ev(6, "a", order.StatusOutForDelivery, t0), ev(7, "a", order.StatusDelivered, t0), ev(8, "a", order.StatusDelivered, t0))
	_ = h.poll(context.Background())
	if err := <-done; err != nil {
		t.Fatalf("stream ended with %v; want nil after DELIVERED", err)
	}
	waitFor(t, got, []int64{3, 5, 6, 7})
}

// IDs are taken at insert and made visible at commit: a gap may fill in later, and must not be skipped
// while the transaction that took its ID can still commit (the log's TransactionBound, counted from when the
// hub first saw the gap). Past that it is a rollback and skipped.
func TestHubWaitsForGapsWithinTheTransactionBound(t *testing.T) {
	log := &memLog{events: map[int64]order.Event{}}
	h, now := newTestHub(t, log)
	got, cancel, _ := collect(t, h, order.StreamRequest{FromNow: true})
	defer cancel()
	waitSubscribed(t, h, 1)
	poll := func() {
		t.Helper()
		if err := h.poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	// 2 is committed, written long ago by its clock; 1 is still being committed and lands within the bound.
	log.commit(ev(2, "b", order.StatusCreated, now.Add(-time.Minute)))
	poll()
	*now = now.Add(memLogBound - time.Second)
	poll()
	time.Sleep(20 * time.Millisecond)
	if g := got(); len(g) != 0 {
		t.Fatalf("received %v past an open gap", g)
	}
	log.commit(ev(1, "a", order.StatusCreated, *now))
	poll()
	waitFor(t, got, []int64{1, 2})

	// 3 rolled back: never comes. 4 waits until the gap is older than the bound, then follows.
	log.commit(ev(4, "c", order.StatusCreated, *now))
	poll()
	*now = now.Add(memLogBound)
	poll()
	time.Sleep(20 * time.Millisecond)
	if g := got(); len(g) != 2 {
		t.Fatalf("received %v within the transaction bound of a gap; want only 1, 2", g)
	}
	*now = now.Add(testPollInterval + time.Second)
	poll()
	waitFor(t, got, []int64{1, 2, 4})
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	log := &memLog{events: map[int64]order.Event{}}
	h, now := newTestHub(t, log)
	block := make(chan struct{})
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		first := true
		done <- h.Stream(context.Background(), order.StreamRequest{FromNow: true}, time.Hour, func(order.Event) error {
			if first { // a client that stops reading for a while
				first = false
				close(started)
				<-block
			}
			return nil
		}, func() error { return nil })
	}()
	var es []order.Event
	for i := int64(1); i <= subscriberBuffer+2; i++ {
		es = append(es, ev(i, "a", order.StatusCreated, *now))
	}
	// Publish one first so the stream is blocked in send, then more than its buffer holds.
	waitSubscribed(t, h, 1)
	log.commit(es[0])
	_ = h.poll(context.Background())
	<-started
	log.commit(es[1:]...)
	_ = h.poll(context.Background())
	close(block)
	if err := <-done; !errors.Is(err, order.ErrSlowSubscriber) {
		t.Fatalf("stream ended with %v; want order.ErrSlowSubscriber", err)
	}
}
