package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/orderclient"
	"github.com/pizzajoint/mesh/order/ordertest"
	"github.com/pizzajoint/mesh/platform/clientlimit"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// Each stream is one call of its endpoint, through the same middleware as every call: it outlives the call
// deadline (its own maximum lifetime bounds it), and is logged once, when it ends, with its outcome.
func TestGatewayStreamsThroughEndpoints(t *testing.T) {
	svc := order.NewService(ordertest.NewMemStore(), order.DefaultMenu)
	placed, err := svc.CreateOrder(t.Context(), order.NewOrder{
		Customer: order.Customer{Name: "Ada", Phone: "+1 555 0100", Address: "1 Main St"},
		Items:    []order.ItemRequest{{Pizza: "margherita", Size: order.SizeLarge, Quantity: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := placed.Order
	mux := http.NewServeMux()
	httpapi.MakeHTTPHandler(mux, order.MakeServerEndpoints(svc))
	events := eventSource(t)
	mux.Handle("GET /orders/{id}/events", events.Config.Handler)
	mux.Handle("GET /events", events.Config.Handler)
	orderSrv := httptest.NewServer(mux)
	t.Cleanup(orderSrv.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.EncodeError(r.Context(), order.ErrUnavailable, w) // a replica whose hub is not ready
	}))
	t.Cleanup(refusing.Close)
	closed := fmt.Sprintf("http://127.0.0.1:%d", testkit.FreePort(t)) // reserved, never bound

	const lifetime = 400 * time.Millisecond
	staffBearer := map[string]string{"Authorization": "Bearer tok-alice"}
	tests := []struct {
		name     string
		orderURL string
		path     string
		header   map[string]string
		status   int
		endpoint string
		outcome  string
	}{
		{"a customer's stream", orderSrv.URL, "/pizza/" + o.ID + "/events?token=" + o.TrackingToken, nil, 200, "track_order_events", kitmw.OutcomeOK},
		{"the staff's stream", orderSrv.URL, "/staff/api/events", staffBearer, 200, "staff_order_events", kitmw.OutcomeOK},
		{"a customer without a token", orderSrv.URL, "/pizza/" + o.ID + "/events", nil, 401, "track_order_events", kitmw.OutcomeClientError},
		{"a wrong token", orderSrv.URL, "/pizza/" + o.ID + "/events?token=guess", nil, 404, "track_order_events", kitmw.OutcomeClientError},
		{"order unreachable", closed, "/staff/api/events", staffBearer, 503, "staff_order_events", kitmw.OutcomeServerError},
		{"order refusing the stream", refusing.URL, "/staff/api/events", staffBearer, 503, "staff_order_events", kitmw.OutcomeServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lockedBuffer{}
			logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			orders, err := orderclient.New(tt.orderURL, &http.Client{})
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(tt.orderURL)
			gwMux := http.NewServeMux()
			endpoints := gateway.MakeEndpoints(gateway.NewService(orders),
				kitmw.Logging(logger, gateway.Outcome), kitmw.Deadline(50*time.Millisecond))
			auth := staff.NewAuth(staffOwners{"tok-alice": "alice"}, slog.New(slog.DiscardHandler), staff.SessionPolicy{})
			gateway.MakeStreamHandler(gwMux, endpoints, auth, u, http.DefaultTransport,
				edge.WithStreamLimits(clientlimit.NewStreamLimiter(10, 10), lifetime))
			gw := httptest.NewTLSServer(reqid.Middleware(gwMux))
			t.Cleanup(gw.Close)

			req, _ := http.NewRequest("GET", gw.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			start := time.Now()
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 200 {
				time.Sleep(lifetime / 2) // well past the call deadline
				if logs.String() != "" {
					t.Fatalf("logged %q while the stream is open; want one line when it ends", logs.String())
				}
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("stream ended with %v, want a clean end", err)
			}
			if tt.status != 200 {
				var answer map[string]any
				if err := json.Unmarshal(body, &answer); err != nil || answer["code"] == nil {
					t.Errorf("body %q: want one JSON error", body)
				}
			}
			if tt.status == 200 {
				if took := time.Since(start); took < lifetime*8/10 || !strings.HasPrefix(string(body), "id: 1\n") {
					t.Errorf("stream of %v with %q; want an event and its full lifetime of about %v", took, body, lifetime)
				}
			}
			// The endpoint logs when its handler returns, which may be just after the client read the answer:
			// Close waits for the handler.
			gw.Close()
			var line struct{ Endpoint, Outcome string }
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if err := json.Unmarshal([]byte(lines[0]), &line); err != nil || len(lines) != 1 ||
				line.Endpoint != tt.endpoint || line.Outcome != tt.outcome {
				t.Errorf("logged %q, want one line: endpoint %s, outcome %s", logs.String(), tt.endpoint, tt.outcome)
			}
		})
	}
}
