package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/orderclient"
	"github.com/pizzajoint/mesh/platform/clientlimit"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// eventSource stands in for order's /events: it sends one event per request (numbered after Last-Event-ID)
// and then holds the stream open until the request ends.
func eventSource(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last, _ := strconv.Atoi(r.Header.Get("Last-Event-ID"))
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %d\nevent: order\ndata: {}\n\n", last+1)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newLimitedGateway serves the whole edge (API and streams) with opts, over TLS.
func newLimitedGateway(t *testing.T, orderURL string, opts ...edge.Option) *httptest.Server {
	t.Helper()
	orders, err := orderclient.New(orderURL, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(orderURL)
	svc := gateway.NewService(orders)
	auth := staff.NewAuth(staffOwners{"tok-alice": "alice"}, slog.New(slog.DiscardHandler), staff.SessionPolicy{})
	mux := http.NewServeMux()
	endpoints := gateway.MakeEndpoints(svc)
	gateway.MakeHTTPHandler(mux, endpoints, auth, opts...)
	endStreams := gateway.MakeStreamHandler(mux, endpoints, auth, u, http.DefaultTransport, opts...)
	srv := httptest.NewUnstartedServer(reqid.Middleware(mux))
	srv.Config.RegisterOnShutdown(endStreams)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// refusals counts what the gateway refused, by its label values.
type refusals struct {
	mu     *sync.Mutex
	counts map[string]float64
	labels []string
}

func newRefusals() *refusals { return &refusals{mu: &sync.Mutex{}, counts: map[string]float64{}} }

func (r *refusals) With(lv ...string) metrics.Counter {
	return &refusals{mu: r.mu, counts: r.counts, labels: append(append([]string{}, r.labels...), lv...)}
}

func (r *refusals) Add(d float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[strings.Join(r.labels, "=")] += d
}

func (r *refusals) get(limit string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts["limit="+limit]
}

func TestGatewayRateLimits(t *testing.T) {
	orderSrv, _ := newOrderService(t)
	refused := newRefusals()
	gw := newLimitedGateway(t, orderSrv.URL,
		edge.WithOrderRateLimit(clientlimit.NewRateLimiter(0.001, 2, 100)),
		edge.WithLoginRateLimit(clientlimit.NewRateLimiter(0.001, 1, 100)),
		edge.WithRefusalCounter(refused))
	login := request{method: "POST", path: "/staff/login", contentType: "application/json", body: `{"token":"nope"}`}
	tests := []struct {
		name   string
		req    request
		status int
	}{
		{"first order", post(validBody), 201},
		{"second order", post(validBody), 201},
		{"third order is over the burst", post(validBody), 429},
		{"even a bad one", post(`{`), 429},
		{"reading is not limited", request{method: "GET", path: "/menu"}, 200},
		{"staff API with a valid bearer token costs no sign-in attempt", bearer("tok-alice"), 200},
		{"and again", bearer("tok-alice"), 200},
		{"first sign-in attempt", login, 401},
		{"second sign-in attempt", login, 429},
		{"a wrong bearer token once the attempts are spent", bearer("nope"), 429},
		{"even a valid one: it is not checked until the client may try again", bearer("tok-alice"), 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, gw, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %v", resp.StatusCode, tt.status, body)
			}
			if tt.status != 429 {
				return
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want whole seconds ≥ 1", resp.Header.Get("Retry-After"))
			}
			if body["code"] != gateway.CodeRateLimited || body["error"] == "" || body["request_id"] != resp.Header.Get(reqid.Header) {
				t.Errorf("body = %v, want the JSON error with code %s", body, gateway.CodeRateLimited)
			}
		})
	}
	if o, l := refused.get("orders"), refused.get("logins"); o != 2 || l != 3 {
		t.Errorf("refusals counted: orders %v, logins %v; want 2 and 3", o, l)
	}
}

func bearer(token string) request {
	return request{method: "GET", path: "/staff/api/orders", header: map[string]string{"Authorization": "Bearer " + token}}
}

// Wrong bearer tokens are guesses like wrong sign-ins: they draw on the same per-client budget, on every staff
// route (the stream too), and once it is spent the client gets 429 with Retry-After before any token is checked.
func TestGatewayLimitsWrongBearerTokens(t *testing.T) {
	orderSrv, _ := newOrderService(t)
	refused := newRefusals()
	gw := newLimitedGateway(t, orderSrv.URL,
		edge.WithLoginRateLimit(clientlimit.NewRateLimiter(0.001, 3, 100)),
		edge.WithRefusalCounter(refused))
	stream := request{method: "GET", path: "/staff/api/events", header: map[string]string{"Authorization": "Bearer nope"}}
	login := request{method: "POST", path: "/staff/login", contentType: "application/json", body: `{"token":"tok-alice"}`}
	for i, c := range []struct {
		req    request
		status int
	}{
		{bearer("nope"), 401}, {bearer("tok-alice"), 200}, {stream, 401}, {bearer("nope2"), 401},
		{bearer("nope"), 429}, {stream, 429}, {bearer("tok-alice"), 429}, {login, 429},
	} {
		resp, body := send(t, gw, c.req)
		if resp.StatusCode != c.status {
			t.Fatalf("request %d (%s %s): status = %d, want %d; body %v", i+1, c.req.method, c.req.path, resp.StatusCode, c.status, body)
		}
		if c.status == 429 {
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("request %d: Retry-After = %q, want whole seconds ≥ 1", i+1, resp.Header.Get("Retry-After"))
			}
		}
	}
	if l := refused.get("logins"); l != 4 {
		t.Errorf("refusals counted under logins: %v; want 4", l)
	}
}

// openStream opens the staff stream and returns the response (its body unread) and the first line read.
func openStream(t *testing.T, gw *httptest.Server, lastEventID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequest("GET", gw.URL+"/staff/api/events", nil)
	req.Header.Set("Authorization", "Bearer tok-alice")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

func TestGatewayStreamCaps(t *testing.T) {
	tests := []struct {
		name             string
		perClient, total int
		open             int // streams that get through
		refused          int
		code             string
		limit            string // the refusal counter's label
	}{
		{"per client", 2, 10, 2, http.StatusTooManyRequests, gateway.CodeRateLimited, "client_streams"},
		{"in total", 10, 3, 3, http.StatusServiceUnavailable, gateway.CodeTooBusy, "all_streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused := newRefusals()
			gw := newLimitedGateway(t, eventSource(t).URL,
				edge.WithStreamLimits(clientlimit.NewStreamLimiter(tt.perClient, tt.total), 0), edge.WithRefusalCounter(refused))
			for i := range tt.open {
				if resp, _ := openStream(t, gw, ""); resp.StatusCode != 200 {
					t.Fatalf("stream %d: %d, want 200", i+1, resp.StatusCode)
				}
			}
			resp, _ := openStream(t, gw, "")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.refused || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), tt.code) {
				t.Fatalf("stream over the cap: %d, Retry-After %q, %s; want %d with Retry-After and %s",
					resp.StatusCode, resp.Header.Get("Retry-After"), body, tt.refused, tt.code)
			}
			if n := refused.get(tt.limit); n != 1 {
				t.Errorf("refusals of %s counted: %v, want 1", tt.limit, n)
			}
		})
	}
}

// A customer stream over the cap is refused before its tracking token is looked up: refusing costs nothing.
func TestGatewayStreamCaps_beforeAnyWork(t *testing.T) {
	var lookups atomic.Int32
	orderSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" { // the staff stream: held open
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		lookups.Add(1)
		httpapi.EncodeError(r.Context(), order.ErrNotFound, w)
	}))
	t.Cleanup(orderSrv.Close)
	gw := newLimitedGateway(t, orderSrv.URL,
		edge.WithStreamLimits(clientlimit.NewStreamLimiter(1, 0), 0))
	resp, _ := send(t, gw, request{method: "GET", path: "/pizza/01ARZ3NDEKTSV4RRFFQ69G5FAV/events?token=t"})
	if resp.StatusCode != 404 || lookups.Load() != 1 {
		t.Fatalf("first stream: %d after %d lookups, want 404 after 1", resp.StatusCode, lookups.Load())
	}
	release := holdStream(t, gw)
	defer release()
	resp, _ = send(t, gw, request{method: "GET", path: "/pizza/01ARZ3NDEKTSV4RRFFQ69G5FAV/events?token=t"})
	if resp.StatusCode != 429 || lookups.Load() != 1 {
		t.Fatalf("stream over the cap: %d after %d lookups, want 429 with no lookup", resp.StatusCode, lookups.Load())
	}
}

// holdStream opens a staff stream and holds it open until release.
func holdStream(t *testing.T, gw *httptest.Server) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL+"/staff/api/events", nil)
	req.Header.Set("Authorization", "Bearer tok-alice")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := gw.Client().Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the stream's slot is taken before the relay calls order
	return func() { cancel(); <-done }
}

// A stream that reaches its maximum lifetime ends cleanly (the client reads EOF, not an error), and frees
// its place under the caps; the client resumes with Last-Event-ID.
func TestGatewayStreamLifetime(t *testing.T) {
	gw := newLimitedGateway(t, eventSource(t).URL,
		edge.WithStreamLimits(clientlimit.NewStreamLimiter(1, 1), 300*time.Millisecond))
	last := ""
	for round := range 3 {
		start := time.Now()
		resp, br := openStream(t, gw, last)
		if resp.StatusCode != 200 {
			t.Fatalf("round %d: %d, want 200 (was the ended stream's place freed?)", round, resp.StatusCode)
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("round %d: stream ended with %v, want a clean end", round, err)
		}
		if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
			t.Errorf("round %d: stream lasted %v, want about 300ms", round, took)
		}
		want := fmt.Sprintf("id: %d\n", round+1)
		if !strings.HasPrefix(string(rest), want) {
			t.Fatalf("round %d: got %q, want it to start with %q", round, rest, want)
		}
		last = strconv.Itoa(round + 1)
		resp.Body.Close()
	}
}

// Shutting the gateway down ends relayed streams cleanly as well.
func TestGatewayStreamEndsAtShutdown(t *testing.T) {
	gw := newLimitedGateway(t, eventSource(t).URL)
	resp, br := openStream(t, gw, "")
	if _, err := br.ReadString('\n'); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %d %v", resp.StatusCode, err)
	}
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- gw.Config.Shutdown(ctx) // waits for the stream: RegisterOnShutdown's endStreams ends it
	}()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(br); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after shutdown")
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown: %v; want it done once the stream ended", err)
	}
}
