package orderclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/order/orderclient"
	"github.com/pizzajoint/mesh/platform/reqid"
)

const orderJSON = `{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","tracking_token":"t","status":"CREATED",` +
	`"customer":{"name":"Ada","phone":"+1 555 0100","address":"1 Main St"},` +
	`"items":[{"pizza":"margherita","size":"L","quantity":2,"unit_price_cents":1500}],"total_cents":3000}`

// padding after a JSON body: the decoder stops at the value's end, so the client must read on to the end of
// the body for the connection to be reused.
var padding = strings.Repeat(" ", 16<<10)

// answer is what the fake order service sends back.
type answer struct {
	status int
	header map[string]string
	body   string
	hang   bool // never answer (until the client gives up)
}

// fakeOrderService answers every request with a, and records the last request.
type fakeOrderService struct {
	*httptest.Server
	mu    sync.Mutex
	a     answer
	last  *http.Request
	body  string
	conns atomic.Int32
}

func newFakeOrderService(t *testing.T) *fakeOrderService {
	t.Helper()
	f := &fakeOrderService{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		a := f.a
		f.last, f.body = r, string(b)
		f.mu.Unlock()
		if a.hang {
			<-r.Context().Done()
			return
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOrderService) answer(a answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.a = a
}

func newClient(t *testing.T, url string) order.Service {
	t.Helper()
	c, err := orderclient.New(url, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNew_badURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9191", "/orders", "http://"} {
		if _, err := orderclient.New(u, http.DefaultClient); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
}

// Every error shape the order service answers with comes back as the typed error it was made from;
// everything that is not such an answer is ErrUnavailable.
func TestHTTPClient_errors(t *testing.T) {
	f := newFakeOrderService(t)
	c := newClient(t, f.URL)
	errBody := func(s string) answer {
		return answer{status: 0, header: map[string]string{"Content-Type": "application/json"}, body: s}
	}
	with := func(a answer, status int) answer { a.status = status; return a }
	tests := []struct {
		name  string
		a     answer
		check func(error) bool
	}{
		{"validation", with(errBody(`{"error":"must be one of S, M, L","code":"invalid_request","field":"items[0].size","request_id":"r"}`), 422),
			func(err error) bool {
				var v *order.ValidationError
				return errors.As(err, &v) && v.Field == "items[0].size" && v.Reason == "must be one of S, M, L"
			}},
		{"bad request body", with(errBody(`{"error":"unknown field","code":"invalid_request","field":"coupon","request_id":"r"}`), 400),
			func(err error) bool { var v *order.ValidationError; return errors.As(err, &v) && v.Field == "coupon" }},
		{"not found", with(errBody(`{"error":"order not found","code":"not_found","request_id":"r"}`+padding), 404),
			func(err error) bool { return errors.Is(err, order.ErrNotFound) }},
		{"illegal transition", with(errBody(`{"error":"no","code":"illegal_transition","from":"CREATED","to":"DELIVERED","request_id":"r"}`), 409),
			func(err error) bool {
				var v *order.IllegalTransitionError
				return errors.As(err, &v) && v.From == order.StatusCreated && v.To == order.StatusDelivered
			}},
		{"idempotency key reused", with(errBody(`{"error":"x","code":"idempotency_key_reused","request_id":"r"}`), 422),
			func(err error) bool { return errors.Is(err, order.ErrIdempotencyMismatch) }},
		{"unavailable", with(errBody(`{"error":"x","code":"unavailable","request_id":"r"}`), 503),
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"internal", with(errBody(`{"error":"internal error","code":"internal","request_id":"r"}`), 500),
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"a proxy's HTML error page", answer{status: 502, body: "<html>Bad Gateway</html>"},
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"an unknown code", with(errBody(`{"error":"x","code":"new_kind","request_id":"r"}`), 418),
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"success that is not JSON", answer{status: 200, body: "ok"},
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"success cut short", answer{status: 200, body: orderJSON[:40]},
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
		{"success of the wrong type", answer{status: 200, body: `{"id":7}`},
			func(err error) bool { return errors.Is(err, order.ErrUnavailable) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.a)
			_, err := c.GetOrder(context.Background(), "01ARZ3NDEKTSV4RRFFQ69G5FAV")
			if err == nil || !tt.check(err) {
				t.Fatalf("GetOrder = %v (%T), not the expected error", err, err)
			}
		})
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for %d answers, want 1: error bodies must be read so the connection is reused", n, len(tests))
	}
}

func TestHTTPClient_reusesConnection(t *testing.T) {
	f := newFakeOrderService(t)
	c := newClient(t, f.URL)
	f.answer(answer{status: 200, body: orderJSON + padding})
	for range 5 {
		if _, err := c.GetOrder(context.Background(), "01ARZ3NDEKTSV4RRFFQ69G5FAV"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 calls, want 1", n)
	}
}

func TestHTTPClient_transportFailures(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)) // reserved, never bound
		_, err := newClient(t, "http://"+addr).Menu(context.Background())
		if !errors.Is(err, order.ErrUnavailable) {
			t.Errorf("Menu = %v, want ErrUnavailable", err)
		}
	})
	t.Run("hanging past the deadline", func(t *testing.T) {
		f := newFakeOrderService(t)
		f.answer(answer{hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := newClient(t, f.URL).Menu(ctx)
		if !errors.Is(err, order.ErrUnavailable) || time.Since(start) > 2*time.Second {
			t.Errorf("Menu = %v after %v, want ErrUnavailable at the deadline", err, time.Since(start))
		}
	})
}

// The requests the client sends: paths, queries, bodies and headers.
func TestHTTPClient_requests(t *testing.T) {
	f := newFakeOrderService(t)
	c := newClient(t, f.URL)
	ctx := reqid.NewContext(context.Background(), "req-42")
	const id = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	tests := []struct {
		name       string
		a          answer
		call       func() (any, error)
		method     string
		target     string
		body       string
		header     map[string]string
		checkReply func(any) bool
	}{
		{"menu", answer{status: 200, body: `{"pizzas":[{"name":"margherita","price_cents":{"L":1500}}]}`},
			func() (any, error) { return c.Menu(ctx) }, "GET", "/menu", "", nil,
			func(v any) bool { m := v.(order.Menu); return len(m) == 1 && m[0].Name == "margherita" }},
		{"create with a key, replayed", answer{status: 201, header: map[string]string{orderapi.ReplayedHeader: "true"}, body: orderJSON},
			func() (any, error) {
				return c.CreateOrder(ctx, order.NewOrder{Customer: order.Customer{Name: "Ada"}, IdempotencyKey: "k-1"})
			}, "POST", "/orders", `"name":"Ada"`, map[string]string{orderapi.IdempotencyKeyHeader: "k-1", "Content-Type": "application/json"},
			func(v any) bool { cr := v.(order.Created); return cr.Replayed && cr.Order.TotalCents == 3000 }},
		{"create without a key", answer{status: 201, body: orderJSON},
			func() (any, error) { return c.CreateOrder(ctx, order.NewOrder{}) }, "POST", "/orders", `"customer"`,
			map[string]string{orderapi.IdempotencyKeyHeader: ""},
			func(v any) bool { return !v.(order.Created).Replayed }},
		{"get", answer{status: 200, body: orderJSON + padding},
			func() (any, error) { return c.GetOrder(ctx, id) }, "GET", "/orders/" + id, "", nil,
			func(v any) bool { return v.(order.Order).ID == id }},
		{"list", answer{status: 200, body: `{"orders":[` + orderJSON + `],"next_cursor":"` + id + `"}`},
			func() (any, error) {
				return c.ListOrders(ctx, order.ListFilter{Status: order.StatusCreated, After: id, Limit: 5})
			}, "GET", "/orders?after=" + id + "&limit=5&status=CREATED", "", nil,
			func(v any) bool { p := v.(order.Page); return len(p.Orders) == 1 && p.NextCursor == id }},
		{"list everything", answer{status: 200, body: `{"orders":[]}`},
			func() (any, error) { return c.ListOrders(ctx, order.ListFilter{}) }, "GET", "/orders", "", nil,
			func(v any) bool { return v.(order.Page).NextCursor == "" }},
		{"change status", answer{status: 200, body: orderJSON},
			func() (any, error) { return c.ChangeStatus(ctx, id, order.StatusAccepted) }, "POST", "/orders/" + id + "/status",
			`{"status":"ACCEPTED"}`, map[string]string{"Content-Type": "application/json"},
			func(v any) bool { return v.(order.Order).Status == order.StatusCreated }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.answer(tt.a)
			v, err := tt.call()
			if err != nil || !tt.checkReply(v) {
				t.Fatalf("reply %+v, %v", v, err)
			}
			f.mu.Lock()
			r, body := f.last, f.body
			f.mu.Unlock()
			if r.Method != tt.method || r.URL.RequestURI() != tt.target {
				t.Errorf("request %s %s, want %s %s", r.Method, r.URL.RequestURI(), tt.method, tt.target)
			}
			if !strings.Contains(body, tt.body) {
				t.Errorf("body %q lacks %q", body, tt.body)
			}
			if got := r.Header.Get(reqid.Header); got != "req-42" {
				t.Errorf("%s = %q, want the caller's request ID", reqid.Header, got)
			}
			for k, v := range tt.header {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}
