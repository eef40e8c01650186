package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/order/orderclient"
	"github.com/pizzajoint/mesh/order/ordertest"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

const validBody = `{"customer":{"name":"Ada","phone":"+1 555 0100","address":"1 Main St"},` +
	`"items":[{"pizza":"margherita","size":"L","quantity":2},{"pizza":"funghi","size":"S","quantity":1}]}`

// newGateway serves the gateway over TLS in front of orderURL, as in production but without the mesh.
func newGateway(t *testing.T, orderURL string, deadline time.Duration) *httptest.Server {
	t.Helper()
	orders, err := orderclient.New(orderURL, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	gateway.MakeHTTPHandler(mux, gateway.MakeEndpoints(gateway.NewService(orders), kitmw.Deadline(deadline)),
		staff.NewAuth(staffOwners{"tok-alice": "alice"}, slog.New(slog.NewTextHandler(io.Discard, nil)), staff.SessionPolicy{}))
	srv := httptest.NewTLSServer(reqid.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv
}

func newOrderService(t *testing.T) (*httptest.Server, *ordertest.MemStore) {
	t.Helper()
	store := ordertest.NewMemStore()
	mux := http.NewServeMux()
	httpapi.MakeHTTPHandler(mux, order.MakeServerEndpoints(order.NewService(store, order.DefaultMenu)))
	srv := httptest.NewServer(reqid.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv, store
}

// staffOwners is a fixed token → name table standing in for the Vault-backed registry.
type staffOwners map[string]string

func (s staffOwners) Owner(_ context.Context, token string) (string, error) {
	if name, ok := s[token]; ok {
		return name, nil
	}
	return "", errors.New("unknown")
}

type request struct {
	method, path, contentType string
	body                      string
	header                    map[string]string
}

func send(t *testing.T, srv *httptest.Server, r request) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d, body is not a JSON object: %q", r.method, r.path, resp.StatusCode, b)
	}
	return resp, m
}

func post(body string) request {
	return request{method: "POST", path: "/pizza", contentType: "application/json", body: body}
}

func replace(old, new string) string { return strings.Replace(validBody, old, new, 1) }

func TestGatewayHTTP(t *testing.T) {
	orderSrv, store := newOrderService(t)
	gw := newGateway(t, orderSrv.URL, 5*time.Second)

	resp, placed := send(t, gw, post(validBody))
	if resp.StatusCode != 201 {
		t.Fatalf("POST /pizza = %d %v", resp.StatusCode, placed)
	}
	id, _ := placed["id"].(string)
	token, _ := placed["tracking_token"].(string)
	if len(token) < 20 {
		t.Fatalf("placed order has tracking token %q; want a long random one", token)
	}
	tracked := map[string]string{gateway.TrackingTokenHeader: token}
	staff := map[string]string{"Authorization": "Bearer tok-alice"}
	if loc := resp.Header.Get("Location"); loc != "/pizza/"+id {
		t.Errorf("Location = %q, want /pizza/%s", loc, id)
	}
	if _, err := store.Get(t.Context(), id); err != nil {
		t.Errorf("placed order %s is not in the store: %v", id, err)
	}
	if placed["status"] != "CREATED" || placed["total_cents"] != float64(2*1500+950) {
		t.Errorf("placed order = %v; want CREATED, total %d", placed, 2*1500+950)
	}

	tests := []struct {
		name   string
		req    request
		status int
		field  string
	}{
		{"get with token", request{method: "GET", path: "/pizza/" + id, header: tracked}, 200, ""},
		{"get with token in query", request{method: "GET", path: "/pizza/" + id + "?token=" + token}, 200, ""},
		{"get without token", request{method: "GET", path: "/pizza/" + id}, 401, ""},
		{"get with wrong token", request{method: "GET", path: "/pizza/" + id, header: map[string]string{gateway.TrackingTokenHeader: "guess"}}, 404, ""},
		{"menu", request{method: "GET", path: "/menu"}, 200, ""},
		{"get unknown", request{method: "GET", path: "/pizza/01ARZ3NDEKTSV4RRFFQ69G5FAV", header: tracked}, 404, ""},
		{"get malformed id", request{method: "GET", path: "/pizza/../../etc", header: tracked}, 404, ""},
		{"staff list", request{method: "GET", path: "/staff/api/orders?status=CREATED", header: staff}, 200, ""},
		{"staff list without token", request{method: "GET", path: "/staff/api/orders"}, 401, ""},
		{"staff list with wrong token", request{method: "GET", path: "/staff/api/orders", header: map[string]string{"Authorization": "Bearer nope"}}, 401, ""},
		{"staff list with a tracking token", request{method: "GET", path: "/staff/api/orders", header: map[string]string{"Authorization": "Bearer " + token}}, 401, ""},
		{"staff get", request{method: "GET", path: "/staff/api/orders/" + id, header: staff}, 200, ""},
		{"staff accept", request{method: "POST", path: "/staff/api/orders/" + id + "/status", contentType: "application/json", body: `{"status":"ACCEPTED"}`, header: staff}, 200, ""},
		{"staff illegal change", request{method: "POST", path: "/staff/api/orders/" + id + "/status", contentType: "application/json", body: `{"status":"DELIVERED"}`, header: staff}, 409, ""},
		{"staff change without token", request{method: "POST", path: "/staff/api/orders/" + id + "/status", contentType: "application/json", body: `{"status":"BAKING"}`}, 401, ""},
		{"staff login with wrong token", request{method: "POST", path: "/staff/login", contentType: "application/json", body: `{"token":"nope"}`}, 401, ""},
		{"unknown path", request{method: "GET", path: "/pizzas"}, 404, ""},
		{"malformed JSON", post(`{"customer":`), 400, ""},
		{"not JSON at all", post(`pizza please`), 400, ""},
		{"two objects", post(validBody + validBody), 400, ""},
		{"array body", post(`[1,2]`), 400, ""},
		{"empty body", post(``), 400, ""},
		{"unknown field", post(replace(`"customer"`, `"coupon":"FREE","customer"`)), 400, "coupon"},
		{"wrong type", post(replace(`"quantity":2`, `"quantity":"2"`)), 400, "items[0].quantity"},
		{"key in another case", post(replace(`"name":"Ada"`, `"name":"Ada","Name":"Bob"`)), 400, "customer.Name"},
		{"duplicate key", post(replace(`"name":"Ada"`, `"name":"Ada","name":"Bob"`)), 400, "customer.name"},
		{"duplicate top-level key", post(replace(`"items"`, `"customer":{},"items"`)), 400, "customer"},
		{"wrong type name", post(replace(`"name":"Ada"`, `"name":7`)), 400, "customer.name"},
		{"client-sent total", post(replace(`"items"`, `"total_cents":1,"items"`)), 400, "total_cents"},
		{"no items", post(`{"customer":{"name":"Ada","phone":"+1 555 0100","address":"1 Main St"},"items":[]}`), 422, "items"},
		{"missing name", post(replace(`"name":"Ada"`, `"name":""`)), 422, "customer.name"},
		{"bad phone", post(replace(`"+1 555 0100"`, `"call me"`)), 422, "customer.phone"},
		{"missing address", post(replace(`"address":"1 Main St"`, `"address":""`)), 422, "customer.address"},
		{"blank name", post(replace(`"name":"Ada"`, `"name":"   "`)), 422, "customer.name"},
		{"name with NUL", post(replace(`"name":"Ada"`, `"name":"Zoë\u0000"`)), 422, "customer.name"},
		{"name with newline", post(replace(`"name":"Ada"`, `"name":"Ada\nBob"`)), 422, "customer.name"},
		{"blank address", post(replace(`"address":"1 Main St"`, `"address":"\t \u00a0"`)), 422, "customer.address"},
		{"address with escape sequence", post(replace(`"address":"1 Main St"`, `"address":"1 Main St\u001b[2J"`)), 422, "customer.address"},
		{"name not UTF-8", post(replace(`"name":"Ada"`, "\"name\":\"Ad\xe9\"")), 400, "customer.name"},
		{"unknown pizza", post(replace(`"funghi"`, `"hawaii"`)), 422, "items[1].pizza"},
		{"unknown size", post(replace(`"size":"L"`, `"size":"XL"`)), 422, "items[0].size"},
		{"quantity zero", post(replace(`"quantity":2`, `"quantity":0`)), 422, "items[0].quantity"},
		{"quantity too big", post(replace(`"quantity":2`, `"quantity":21`)), 422, "items[0].quantity"},
		{"oversized body", post(replace(`"1 Main St"`, `"`+strings.Repeat("x", gateway.MaxBodyBytes)+`"`)), 413, ""},
		{"wrong content type", request{method: "POST", path: "/pizza", contentType: "text/plain", body: validBody}, 415, ""},
		{"no content type", request{method: "POST", path: "/pizza", body: validBody}, 415, ""},
		{"bad idempotency key", request{method: "POST", path: "/pizza", contentType: "application/json", body: validBody,
			header: map[string]string{gateway.IdempotencyKeyHeader: "has space"}}, 422, "Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, gw, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %v", resp.StatusCode, tt.status, body)
			}
			if tt.status < 400 {
				return
			}
			if msg, _ := body["error"].(string); msg == "" {
				t.Errorf("error body has no message: %v", body)
			}
			if body["request_id"] == "" || body["request_id"] != resp.Header.Get(reqid.Header) {
				t.Errorf("request_id %v, header %q: want both, equal", body["request_id"], resp.Header.Get(reqid.Header))
			}
			if got, _ := body["field"].(string); got != tt.field {
				t.Errorf("field = %q, want %q (message %q)", got, tt.field, body["error"])
			}
		})
	}
}

// The shop shows prices in the shop's currency, so the menu says which it is.
func TestMenuNamesItsCurrency(t *testing.T) {
	orderSrv, _ := newOrderService(t)
	gw := newGateway(t, orderSrv.URL, 5*time.Second)
	resp, body := send(t, gw, request{method: "GET", path: "/menu"})
	if resp.StatusCode != 200 || body["currency"] != order.Currency {
		t.Fatalf("GET /menu = %d, currency %v; want 200 and %q", resp.StatusCode, body["currency"], order.Currency)
	}
	if pizzas, _ := body["pizzas"].([]any); len(pizzas) != len(order.DefaultMenu) {
		t.Errorf("GET /menu has %d pizzas, want %d", len(pizzas), len(order.DefaultMenu))
	}
}

func TestGatewayIdempotency(t *testing.T) {
	orderSrv, _ := newOrderService(t)
	gw := newGateway(t, orderSrv.URL, 5*time.Second)
	r := post(validBody)
	r.header = map[string]string{gateway.IdempotencyKeyHeader: "retry-me"}
	first, a := send(t, gw, r)
	second, b := send(t, gw, r)
	if first.StatusCode != 201 || second.StatusCode != 201 || a["id"] != b["id"] || second.Header.Get(gateway.ReplayedHeader) != "true" {
		t.Fatalf("retry with the same key: %d %v, then %d %v (replayed %q); want one order",
			first.StatusCode, a["id"], second.StatusCode, b["id"], second.Header.Get(gateway.ReplayedHeader))
	}
	r.body = replace(`"quantity":2`, `"quantity":5`)
	if resp, body := send(t, gw, r); resp.StatusCode != 422 || body["code"] != orderapi.CodeIdempotencyMismatch {
		t.Errorf("same key, other body: %d %v; want 422 %s", resp.StatusCode, body, orderapi.CodeIdempotencyMismatch)
	}
}

// When the order service is down or hangs, the customer gets 503 with Retry-After, never a hang.
func TestGatewayOrderServiceUnavailable(t *testing.T) {
	closed := func() string {
		return fmt.Sprintf("http://127.0.0.1:%d", testkit.FreePort(t)) // reserved, never bound
	}
	hanging := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() { // accepts and never answers, like a wedged process behind a sidecar
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		return "http://" + ln.Addr().String()
	}
	failing := func() string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for name, url := range map[string]func() string{"refused": closed, "hanging": hanging, "answering 500": failing} {
		t.Run(name, func(t *testing.T) {
			gw := newGateway(t, url(), 300*time.Millisecond)
			resp, body := send(t, gw, post(validBody))
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || body["code"] != orderapi.CodeUnavailable {
				t.Errorf("got %d (Retry-After %q) %v; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
		})
	}
}

// FuzzPlaceOrder feeds arbitrary bodies to POST /pizza (decoder, validation and pricing, no network). Whatever
// arrives, the answer is 201 with a correct total or a 4xx JSON error: never a 5xx, never a panic.
func FuzzPlaceOrder(f *testing.F) {
	for _, seed := range []string{
		validBody, `{}`, `[]`, `null`, `{"customer":null,"items":null}`, `{"items":[{"quantity":1e400}]}`,
		replace(`"L"`, `"l"`), replace(`"Ada"`, `"\u0000"`), replace(`2`, `-1`), replace(`2`, `2.5`),
		`{"customer":{"name":"A","phone":"12345","address":"x"},"items":[{"pizza":"margherita","size":"M","quantity":20}]}`,
	} {
		f.Add([]byte(seed))
	}
	mux := http.NewServeMux()
	svc := gateway.NewService(order.NewService(ordertest.NewMemStore(), order.DefaultMenu))
	gateway.MakeHTTPHandler(mux, gateway.MakeEndpoints(svc), nil)
	h := reqid.Middleware(mux)

	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/pizza", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var resp struct {
			Error      string       `json:"error"`
			RequestID  string       `json:"request_id"`
			Items      []order.Item `json:"items"`
			TotalCents int64        `json:"total_cents"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("status %d, body is not JSON: %q", rec.Code, rec.Body.String())
		}
		switch {
		case rec.Code == 201:
			var total int64
			for _, it := range resp.Items {
				total += it.UnitPriceCents * int64(it.Quantity)
			}
			if total != resp.TotalCents || total <= 0 {
				t.Fatalf("201 with total %d, items add up to %d", resp.TotalCents, total)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if resp.Error == "" || resp.RequestID == "" {
				t.Fatalf("%d without error message or request id: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("status %d for body %q: %q", rec.Code, body, rec.Body.String())
		}
	})
}

// A client announcing a body over the limit with Expect: 100-continue gets 413 at once, never 100 Continue,
// with Connection: close, so the unsent body is never taken for a request.
func TestGatewayRefusesOversizedBodyBeforeContinue(t *testing.T) {
	orderSrv, store := newOrderService(t)
	gw := newGateway(t, orderSrv.URL, 5*time.Second)
	tests := []struct {
		name   string
		path   string
		length int
		expect bool // Expect: 100-continue, and the body never sent; else the body follows the headers
	}{
		{"order of 3 MB", "/pizza", 3 << 20, true},
		{"order just over the limit", "/pizza", gateway.MaxBodyBytes + 1, true},
		{"staff sign-in of 1 MB", "/staff/login", 1 << 20, true},
		{"order just over the limit, sent at once", "/pizza", gateway.MaxBodyBytes + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", gw.Listener.Addr().String(), gw.Client().Transport.(*http.Transport).TLSClientConfig)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			expect := ""
			if tt.expect {
				expect = "Expect: 100-continue\r\n"
			}
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n",
				tt.path, tt.length, expect)
			if !tt.expect {
				go func() { _, _ = conn.Write(bytes.Repeat([]byte(" "), tt.length)) }()
			}
			br := bufio.NewReader(conn)
			status, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if !strings.HasPrefix(status, "HTTP/1.1 413 ") {
				t.Fatalf("first line %q, want 413 (and never 100 Continue)", status)
			}
			resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(status), br)), nil)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["code"] != orderapi.CodeInvalid || body["request_id"] == "" {
				t.Errorf("body %v (%v), want the JSON error", body, err)
			}
			if !resp.Close {
				t.Errorf("413 without Connection: close")
			}
		})
	}
	if p, err := store.List(t.Context(), order.ListFilter{Limit: 10}); err != nil || len(p.Orders) != 0 {
		t.Errorf("orders stored: %v %v, want none", p.Orders, err)
	}
}

// The outcome of each call, as the logging and metrics middleware of cmd/gateway record it. A customer
// without a tracking token is answered 401: the client's doing, logged at INFO and counted as a client error,
// never as a server error.
func TestGatewayOutcomes(t *testing.T) {
	orderSrv, _ := newOrderService(t)
	orders, err := orderclient.New(orderSrv.URL, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	observed := &outcomeRecorder{}
	mux := http.NewServeMux()
	gateway.MakeHTTPHandler(mux, gateway.MakeEndpoints(gateway.NewService(orders),
		kitmw.Instrumenting(observed, gateway.Outcome), kitmw.Logging(logger, gateway.Outcome), kitmw.Deadline(5*time.Second)),
		staff.NewAuth(staffOwners{"tok-alice": "alice"}, slog.New(slog.DiscardHandler), staff.SessionPolicy{}))
	gw := httptest.NewTLSServer(reqid.Middleware(mux))
	t.Cleanup(gw.Close)

	_, placed := send(t, gw, post(validBody))
	id, _ := placed["id"].(string)
	token, _ := placed["tracking_token"].(string)
	staff := map[string]string{"Authorization": "Bearer tok-alice"}
	tests := []struct {
		name     string
		req      request
		status   int
		endpoint string
		outcome  string
		level    string
	}{
		{"track without a token", request{method: "GET", path: "/pizza/" + id}, 401, "track_order", kitmw.OutcomeClientError, "INFO"},
		{"track with a wrong token", request{method: "GET", path: "/pizza/" + id, header: map[string]string{gateway.TrackingTokenHeader: "guess"}},
			404, "track_order", kitmw.OutcomeClientError, "INFO"},
		{"track", request{method: "GET", path: "/pizza/" + id, header: map[string]string{gateway.TrackingTokenHeader: token}},
			200, "track_order", kitmw.OutcomeOK, "DEBUG"},
		{"an order without items", post(`{"customer":{"name":"Ada","phone":"+1 555 0100","address":"1 Main St"},"items":[]}`),
			422, "place_order", kitmw.OutcomeClientError, "INFO"},
		{"an illegal change", request{method: "POST", path: "/staff/api/orders/" + id + "/status", contentType: "application/json",
			body: `{"status":"DELIVERED"}`, header: staff}, 409, "staff_change_status", kitmw.OutcomeClientError, "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			observed.reset()
			if resp, body := send(t, gw, tt.req); resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %v", resp.StatusCode, tt.status, body)
			}
			var line struct {
				Level, Endpoint, Outcome string
			}
			if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
				t.Fatalf("log %q: want one endpoint call line: %v", logs.String(), err)
			}
			if line.Endpoint != tt.endpoint || line.Outcome != tt.outcome || line.Level != tt.level {
				t.Errorf("logged %+v, want endpoint %s, outcome %s at %s", line, tt.endpoint, tt.outcome, tt.level)
			}
			if got, want := observed.get(), "method="+tt.endpoint+",outcome="+tt.outcome; len(got) != 1 || got[0] != want {
				t.Errorf("observed %v, want [%s]", got, want)
			}
		})
	}
}

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *lockedBuffer) String() string { return string(b.Bytes()) }

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

// outcomeRecorder is a histogram noting the labels of each observation.
type outcomeRecorder struct {
	mu     sync.Mutex
	labels []string
	with   []string
	parent *outcomeRecorder
}

func (r *outcomeRecorder) With(lv ...string) metrics.Histogram {
	root := r
	if r.parent != nil {
		root = r.parent
	}
	return &outcomeRecorder{parent: root, with: append(append([]string{}, r.with...), lv...)}
}

func (r *outcomeRecorder) Observe(float64) {
	var pairs []string
	for i := 0; i+1 < len(r.with); i += 2 {
		pairs = append(pairs, r.with[i]+"="+r.with[i+1])
	}
	r.parent.mu.Lock()
	defer r.parent.mu.Unlock()
	r.parent.labels = append(r.parent.labels, strings.Join(pairs, ","))
}

func (r *outcomeRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.labels...)
}

func (r *outcomeRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.labels = nil
}
