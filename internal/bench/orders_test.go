package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/order"
)

func TestOrdersAreValidAndKeysUnique(t *testing.T) {
	g := NewOrders("https://gw/pizza", "bench-x", 1)
	tr := g.Targeter()
	seen := map[string]bool{}
	for range 500 {
		var tgt vegeta.Target
		if err := tr(&tgt); err != nil {
			t.Fatal(err)
		}
		key := tgt.Header.Get(gateway.IdempotencyKeyHeader)
		if seen[key] {
			t.Fatalf("key %q twice", key)
		}
		seen[key] = true
		var n order.NewOrder
		dec := json.NewDecoder(strings.NewReader(string(tgt.Body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&n); err != nil {
			t.Fatalf("body %s: %v", tgt.Body, err)
		}
		n.IdempotencyKey = key
		if err := n.Validate(); err != nil {
			t.Fatalf("body %s: %v", tgt.Body, err)
		}
		if _, err := newOrderRow(n, key, time.Now()); err != nil {
			t.Fatalf("body %s: %v", tgt.Body, err)
		}
		if tgt.Method != http.MethodPost || tgt.URL != "https://gw/pizza" || tgt.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("target %+v", tgt)
		}
	}
}

func TestOrderRowPricesFromTheMenu(t *testing.T) {
	n := order.NewOrder{Customer: order.Customer{Name: "Ada", Phone: "+44 1", Address: "1 Lane"},
		Items: []order.ItemRequest{{Pizza: "margherita", Size: "L", Quantity: 2}, {Pizza: "marinara", Size: "S", Quantity: 1}}}
	r, err := newOrderRow(n, "k", time.Date(2026, 1, 1, 0, 0, 0, 1500, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if r.TotalCents != 2*1500+800 || len(r.Items) != 2 || r.Status != order.StatusCreated || len(r.hash) != 32 {
		t.Errorf("row %+v", r)
	}
	if r.CreatedAt.Nanosecond() != 1000 {
		t.Errorf("created_at %v: want microseconds, what DATETIME(6) keeps", r.CreatedAt)
	}
	n.Items[0].Pizza = "hawaii"
	if _, err := newOrderRow(n, "k", time.Now()); err == nil {
		t.Error("a pizza off the menu: want an error")
	}
}

// The load runs exactly Clients requests at a time, never more.
func TestLoadConcurrency(t *testing.T) {
	var (
		mu             sync.Mutex
		inFlight, peak int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		if r.Header.Get(gateway.IdempotencyKeyHeader) == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	l := Load{Clients: 4, Duration: 300 * time.Millisecond, Client: srv.Client(),
		Targeter: NewOrders(srv.URL+"/pizza", "t", 1).Targeter()}
	s := Summarize(l.Run(context.Background(), "test"))
	if s.Requests == 0 || s.Errors != 0 {
		t.Fatalf("summary %+v", s)
	}
	if peak != 4 {
		t.Errorf("peak concurrency %d, want 4", peak)
	}
}
