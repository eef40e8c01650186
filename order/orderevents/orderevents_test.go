package orderevents_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/eventstream"
	"github.com/pizzajoint/mesh/order/mysqlstore/storetest"
	"github.com/pizzajoint/mesh/order/orderevents"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type identity struct {
	seedFile string
	opt      nats.Option
}

// natsWithRoles starts a server that admits one nkey user per role, with the repository's permissions.
func natsWithRoles(t *testing.T, roles ...string) (*natstest.Server, map[string]identity) {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]identity{}
	var users []natsauth.User
	for _, role := range roles {
		seed, pub, err := natsauth.NewUser()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), role+".nk")
		if err := os.WriteFile(file, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		opt, err := nats.NkeyOptionFromSeed(file)
		if err != nil {
			t.Fatal(err)
		}
		ids[role] = identity{seedFile: file, opt: opt}
		users = append(users, natsauth.User{PublicKey: pub, Role: role})
	}
	accounts, err := natsauth.Accounts(filepath.Join(root, "nats", "permissions"), users)
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Start(t, accounts), ids
}

func jsAs(t *testing.T, srv *natstest.Server, id identity) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(srv.Connect(id.opt), jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// The order service's event path as it runs: its own nkey user with the order role, the relay nudged by each
// write (the sweep is an hour here, so only the nudge can deliver in time), the stream served back. Seen red
// with Nudging not wrapping the store: "no event within 20 s".
func TestOrderEventsOnJetStream(t *testing.T) {
	srv, ids := natsWithRoles(t, "order", "provisioner")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := eventstream.Ensure(ctx, jsAs(t, srv, ids["provisioner"]), 1); err != nil {
		t.Fatal(err)
	}
	db := storetest.New(t)

	var cfg orderevents.Config
	cfg.NATS.URL, cfg.NATS.SeedFile, cfg.NATS.Name, cfg.NATS.Timeout = srv.URL(), ids["order"].seedFile, "order-test", 5*time.Second
	cfg.Relay.Sweep, cfg.Relay.Batch = time.Hour, 256
	events, err := orderevents.Open(ctx, cfg, db.Store, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- events.Run(runCtx) }()
	defer func() { stop(); <-done; events.Close() }()
	if len(events.Checks) != 0 {
		t.Errorf("on JetStream, %d readiness checks; want none (orders flow while NATS is away)", len(events.Checks))
	}

	svc := order.NewService(events.Store, order.DefaultMenu)
	time.Sleep(1500 * time.Millisecond) // the relay's first sweep is done: what follows only a nudge delivers
	created, err := svc.CreateOrder(ctx, order.NewOrder{
		Customer: order.Customer{Name: "Ada", Phone: "+44 20 7946 0000", Address: "1 Pizza Lane"},
		Items:    []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan order.Event, 1)
	streamCtx, endStream := context.WithTimeout(ctx, 20*time.Second)
	defer endStream()
	go func() {
		_ = events.Streams.Stream(streamCtx, order.StreamRequest{OrderID: created.Order.ID}, time.Second,
			func(e order.Event) error { got <- e; return errors.New("one is enough") }, func() error { return nil })
	}()
	select {
	case e := <-got:
		if e.OrderID != created.Order.ID || e.Status != order.StatusCreated {
			t.Errorf("stream gave %+v, want the new order's CREATED", e)
		}
	case <-streamCtx.Done():
		t.Fatal("no event within 20 s")
	}
}

// Each identity can do its job and nothing more: an anonymous client is refused, order cannot change or
// delete the stream nor publish outside orders.>, the provisioner cannot publish events. Seen red with
// "$JS.API.STREAM.DELETE.ORDERS" added to the order role: the delete went through.
func TestNATSIdentitiesAreLeastPrivilege(t *testing.T) {
	srv, ids := natsWithRoles(t, "order", "provisioner")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := jsAs(t, srv, ids["provisioner"])
	if err := eventstream.Ensure(ctx, admin, 1); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(srv.URL(), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}

	js := jsAs(t, srv, ids["order"])
	// Each call has its own short deadline: a refused request is never answered, and waits it out.
	refused := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"order deletes the stream", func(ctx context.Context) error { return js.DeleteStream(ctx, eventstream.Name) }},
		{"order changes the stream", func(ctx context.Context) error { _, err := js.UpdateStream(ctx, eventstream.Config(1)); return err }},
		{"order makes a stream", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
			return err
		}},
		{"order publishes outside orders.>", func(ctx context.Context) error {
			_, err := jsAs(t, srv, ids["order"]).Publish(ctx, "staff.board", []byte("{}"))
			return err
		}},
		{"provisioner publishes an event", func(ctx context.Context) error {
			_, err := admin.Publish(ctx, eventstream.Subject("01ARZ3NDEKTSV4RRFFQ69G5FAV"), []byte("{}"))
			return err
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := tt.call(ctx); err == nil {
				t.Error("allowed")
			}
		})
	}
	if _, err := js.Publish(ctx, eventstream.Subject("01ARZ3NDEKTSV4RRFFQ69G5FAV"), []byte("{}")); err != nil {
		t.Errorf("order cannot publish an event: %v", err)
	}
}

func TestOpenRefusesAMissingKey(t *testing.T) {
	var cfg orderevents.Config
	if _, err := orderevents.Open(context.Background(), cfg, nil, prometheus.NewRegistry(), quiet); err == nil {
		t.Error("opened without a NATS key")
	}
}

func TestUpstreams(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want int // the upstream's port; -1: an error
	}{
		{"nats://127.0.0.1:9292", 9292},
		{"nats://127.0.0.1", -1},
		{"nats://127.0.0.1:99999", -1},
	} {
		var cfg orderevents.Config
		cfg.NATS.URL = tt.url
		ups, err := cfg.Upstreams()
		switch {
		case tt.want == -1 && err == nil:
			t.Errorf("%s: no error", tt.url)
		case tt.want > 0 && (err != nil || len(ups) != 1 || ups[0].Service != "nats" || ups[0].LocalPort != tt.want):
			t.Errorf("%s: %v %v; want nats on %d", tt.url, ups, err, tt.want)
		}
	}
}

func mustNkey(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}
