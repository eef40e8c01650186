package orderevents_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/eventstream"
	"github.com/pizzajoint/mesh/order/mysqlstore/storetest"
	"github.com/pizzajoint/mesh/order/orderevents"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

// The instance's NATS key rotated while the relay publishes and a stream is open: order moves to a connection
// with the new key and closes the previous one before the previous key is dropped; every event reaches the
// stream once; the stream open across the rotation ends, and a resume from its last ID gets the rest exactly
// once. Seen red with the watcher never swapping the connection: "a connection still uses the previous key".
func TestNATSKeyRotationUnderLoad(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	permDir := filepath.Join(root, "nats", "permissions")
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "nats-seed")
	newKey := func(role string) (seed []byte, u natsauth.User) {
		seed, pub, err := natsauth.NewUser()
		if err != nil {
			t.Fatal(err)
		}
		return seed, natsauth.User{Role: role, PublicKey: pub}
	}
	accounts := func(users ...natsauth.User) string {
		a, err := natsauth.Accounts(permDir, users)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	writeSeed := func(seed []byte) { // as meshctl does: a new file renamed over the old one
		if err := os.WriteFile(seedFile+".new", seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(seedFile+".new", seedFile); err != nil {
			t.Fatal(err)
		}
	}
	provSeed, prov := newKey("provisioner")
	oldSeed, oldUser := newKey("order")
	newSeed, newUser := newKey("order")
	provFile := filepath.Join(dir, "provisioner.nk")
	if err := os.WriteFile(provFile, provSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSeed(oldSeed)
	srv := natstest.StartMonitored(t, accounts(prov, oldUser))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := jsAs(t, srv, identity{seedFile: provFile, opt: mustNkey(t, provFile)})
	if err := eventstream.Ensure(ctx, admin, 1); err != nil {
		t.Fatal(err)
	}
	db := storetest.New(t)

	var cfg orderevents.Config
	cfg.NATS.URL, cfg.NATS.SeedFile, cfg.NATS.Name, cfg.NATS.Timeout = srv.URL(), seedFile, "order-test", 5*time.Second
	cfg.NATS.SeedCheck = 200 * time.Millisecond
	cfg.Relay.Sweep, cfg.Relay.Batch = 200*time.Millisecond, 256
	reg := prometheus.NewRegistry()
	events, err := orderevents.Open(ctx, cfg, db.Store, reg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- events.Run(runCtx) }()
	defer func() { stop(); <-done; events.Close() }()

	// A stream of every order's events, open from before the first order until the rotation ends it.
	type received struct {
		ids  []int64
		last int64 // the resume point (Last-Event-ID)
	}
	follow := func(after int64, until func(received) bool) (received, error) {
		var got received
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		errDone := errors.New("done")
		err := events.Streams.Stream(sctx, order.StreamRequest{FromNow: after == 0, After: after}, 200*time.Millisecond,
			func(e order.Event) error {
				got.ids, got.last = append(got.ids, e.ID), e.ResumeID()
				if until != nil && until(got) {
					return errDone
				}
				return nil
			}, func() error { return nil })
		if errors.Is(err, errDone) {
			err = nil
		}
		return got, err
	}
	firstStream := make(chan struct {
		got received
		err error
	}, 1)
	go func() {
		got, err := follow(0, nil)
		firstStream <- struct {
			got received
			err error
		}{got, err}
	}()
	time.Sleep(500 * time.Millisecond) // the stream's consumer is in place

	// Orders keep coming until told to stop; each writes one event the relay publishes.
	svc := order.NewService(events.Store, order.DefaultMenu)
	var (
		mu      sync.Mutex
		created int
		failed  []error
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	for range 2 {
		load.Add(1)
		go func() {
			defer load.Done()
			for loadCtx.Err() == nil {
				_, err := svc.CreateOrder(ctx, order.NewOrder{
					Customer: order.Customer{Name: "Ada", Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
					Items:    []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 1}},
				})
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					created++
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)

	// meshctl nats-key rotate, then the server's reload: both keys admitted.
	writeSeed(newSeed)
	srv.Reconfigure(accounts(prov, oldUser, newUser))
	// meshctl nats-key retire: waits until no connection uses the previous key, then drops it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := natstest.Connections(t, srv.MonitorURL(), oldUser.PublicKey)
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a connection still uses the previous key 20 s after the rotation (%d open)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if natstest.Connections(t, srv.MonitorURL(), newUser.PublicKey) == 0 {
		t.Fatal("no connection with the new key")
	}
	srv.Reconfigure(accounts(prov, newUser))
	time.Sleep(time.Second)
	stopLoad()
	load.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d orders failed across the rotation, first: %v", len(failed), failed[0])
	}

	var first received
	select {
	case r := <-firstStream:
		if !errors.Is(r.err, order.ErrUnavailable) {
			t.Fatalf("the stream open across the rotation ended with %v; want it ended for a reconnect", r.err)
		}
		first = r.got
	case <-time.After(20 * time.Second):
		t.Fatal("the stream open across the rotation did not end")
	}
	if first.last == 0 {
		t.Fatal("the stream open across the rotation got nothing before it ended")
	}
	seen := map[int64]int{}
	for _, id := range first.ids {
		seen[id]++
	}
	rest, err := follow(first.last, func(r received) bool { return len(seen)+len(r.ids) >= created })
	if err != nil {
		t.Fatalf("resume from %d: %v (got %d of %d events)", first.last, err, len(seen)+len(rest.ids), created)
	}
	for _, id := range rest.ids {
		seen[id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d delivered %d times", id, n)
		}
	}
	if len(seen) != created {
		t.Errorf("%d events delivered, %d orders created", len(seen), created)
	}
	s, err := admin.Stream(ctx, eventstream.Name)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := s.CachedInfo().State.Msgs; msgs != uint64(created) {
		t.Errorf("the stream holds %d events, %d orders created", msgs, created)
	}
	if got := counterValue(t, reg, "pizza_order_nats_key_rotations_total"); got != 1 {
		t.Errorf("rotations counted: %v, want 1", got)
	}
	t.Logf("%d orders across the rotation; the stream open across it got %d events, its resume %d", created, len(first.ids), len(rest.ids))
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
