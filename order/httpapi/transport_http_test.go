package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/order/ordertest"
	"github.com/pizzajoint/mesh/platform/reqid"
)

const validBody = `{"customer":{"name":"Ada","phone":"+1 555 0100","address":"1 Main St"},` +
	`"items":[{"pizza":"margherita","size":"L","quantity":2},{"pizza":"funghi","size":"S","quantity":1}]}`

func newOrderServer(t *testing.T) (*httptest.Server, *ordertest.MemStore) {
	t.Helper()
	store := ordertest.NewMemStore()
	mux := http.NewServeMux()
	httpapi.MakeHTTPHandler(mux, order.MakeServerEndpoints(order.NewService(store, order.DefaultMenu)))
	srv := httptest.NewServer(reqid.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv, store
}

type call struct {
	method, path, body string
	header             map[string]string
}

func do(t *testing.T, base string, c call) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %q", c.method, c.path, b)
	}
	return resp, m
}

func TestOrderHTTP(t *testing.T) {
	srv, store := newOrderServer(t)
	_, created := do(t, srv.URL, call{method: "POST", path: "/orders", body: validBody})
	id := created["id"].(string)

	tests := []struct {
		name      string
		call      call
		status    int
		errorCode string
		field     string
	}{
		{"menu", call{method: "GET", path: "/menu"}, 200, "", ""},
		{"create", call{method: "POST", path: "/orders", body: validBody}, 201, "", ""},
		{"get", call{method: "GET", path: "/orders/" + id}, 200, "", ""},
		{"get unknown", call{method: "GET", path: "/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV"}, 404, orderapi.CodeNotFound, ""},
		{"get malformed id", call{method: "GET", path: "/orders/nope"}, 404, orderapi.CodeNotFound, ""},
		{"list", call{method: "GET", path: "/orders?status=CREATED&limit=10"}, 200, "", ""},
		{"list unknown status", call{method: "GET", path: "/orders?status=EATEN"}, 422, orderapi.CodeInvalid, "status"},
		{"list bad limit", call{method: "GET", path: "/orders?limit=ten"}, 422, orderapi.CodeInvalid, "limit"},
		{"list limit too big", call{method: "GET", path: "/orders?limit=1000"}, 422, orderapi.CodeInvalid, "limit"},
		{"list bad cursor", call{method: "GET", path: "/orders?after=zzz"}, 422, orderapi.CodeInvalid, "cursor"},
		{"accept", call{method: "POST", path: "/orders/" + id + "/status", body: `{"status":"ACCEPTED"}`}, 200, "", ""},
		{"illegal transition", call{method: "POST", path: "/orders/" + id + "/status", body: `{"status":"DELIVERED"}`}, 409, orderapi.CodeIllegalTransition, ""},
		{"unknown status", call{method: "POST", path: "/orders/" + id + "/status", body: `{"status":"EATEN"}`}, 422, orderapi.CodeInvalid, "status"},
		{"status of unknown order", call{method: "POST", path: "/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV/status", body: `{"status":"ACCEPTED"}`}, 404, orderapi.CodeNotFound, ""},
		{"unknown pizza", call{method: "POST", path: "/orders", body: strings.Replace(validBody, "funghi", "hawaii", 1)}, 422, orderapi.CodeInvalid, "items[1].pizza"},
		{"client-sent price", call{method: "POST", path: "/orders", body: strings.Replace(validBody, `"quantity":1}`, `"quantity":1,"unit_price_cents":1}`, 1)}, 400, orderapi.CodeInvalid, "items[1].unit_price_cents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, srv.URL, tt.call)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %v", resp.StatusCode, tt.status, body)
			}
			if tt.errorCode == "" {
				return
			}
			if body["code"] != tt.errorCode || body["error"] == "" || body["request_id"] != resp.Header.Get(reqid.Header) {
				t.Errorf("error body %v: want code %q, a message and the request id %q", body, tt.errorCode, resp.Header.Get(reqid.Header))
			}
			if got, _ := body["field"].(string); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
		})
	}
	if store.Events[id] != 2 {
		t.Errorf("events of %s = %d, want 2 (CREATED, ACCEPTED)", id, store.Events[id])
	}
}

func TestOrderHTTPIdempotency(t *testing.T) {
	srv, _ := newOrderServer(t)
	key := map[string]string{orderapi.IdempotencyKeyHeader: "k-123"}
	first, a := do(t, srv.URL, call{method: "POST", path: "/orders", body: validBody, header: key})
	again, b := do(t, srv.URL, call{method: "POST", path: "/orders", body: validBody, header: key})
	if first.StatusCode != 201 || again.StatusCode != 201 || a["id"] != b["id"] {
		t.Fatalf("replay: %d %v then %d %v; want the same order twice", first.StatusCode, a["id"], again.StatusCode, b["id"])
	}
	if first.Header.Get(orderapi.ReplayedHeader) != "" || again.Header.Get(orderapi.ReplayedHeader) != "true" {
		t.Errorf("%s header: first %q, replay %q", orderapi.ReplayedHeader, first.Header.Get(orderapi.ReplayedHeader), again.Header.Get(orderapi.ReplayedHeader))
	}
	other, c := do(t, srv.URL, call{method: "POST", path: "/orders", body: strings.Replace(validBody, `"quantity":2`, `"quantity":3`, 1), header: key})
	if other.StatusCode != 422 || c["code"] != orderapi.CodeIdempotencyMismatch {
		t.Errorf("same key, other body: %d %v; want 422 %s", other.StatusCode, c, orderapi.CodeIdempotencyMismatch)
	}
	bad, d := do(t, srv.URL, call{method: "POST", path: "/orders", body: validBody, header: map[string]string{orderapi.IdempotencyKeyHeader: strings.Repeat("k", 129)}})
	if bad.StatusCode != 422 || d["field"] != "Idempotency-Key" {
		t.Errorf("over-long key: %d %v; want 422 naming Idempotency-Key", bad.StatusCode, d)
	}
}
