package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// eventLog is an event log in memory, and the order.EventStreams the endpoint serves from it: history after
// the request's cursor, then live events as they are added, until an order's final status.
type eventLog struct {
	mu     sync.Mutex
	events []order.Event
	ready  bool
}

func (l *eventLog) add(orderID string, s order.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, order.Event{ID: int64(len(l.events) + 1), OrderID: orderID, Status: s, At: time.Now()})
}

func (l *eventLog) Ready(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ready {
		return errors.New("not ready")
	}
	return nil
}

func (l *eventLog) Stream(ctx context.Context, req order.StreamRequest, heartbeat time.Duration, send func(order.Event) error, idle func() error) error {
	next := req.After
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	lastSent := time.Now()
	for {
		l.mu.Lock()
		pending := slices.Clone(l.events[min(int(next), len(l.events)):])
		l.mu.Unlock()
		for _, e := range pending {
			next = e.ID
			if req.OrderID != "" && e.OrderID != req.OrderID {
				continue
			}
			if err := send(e); err != nil {
				return err
			}
			lastSent = time.Now()
			if req.OrderID != "" && (e.Status == order.StatusDelivered || e.Status == order.StatusCancelled) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if time.Since(lastSent) >= heartbeat {
				if err := idle(); err != nil {
					return err
				}
				lastSent = time.Now()
			}
		}
	}
}

// endpointLog collects the endpoint middleware's lines.
type endpointLog struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (l *endpointLog) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, m)
	return len(p), nil
}

func (l *endpointLog) get() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}

// newStreamServer serves order's streams from log through the endpoint middleware, with a deadline far shorter
// than any stream.
func newStreamServer(t *testing.T, log *eventLog) (*httptest.Server, *endpointLog) {
	t.Helper()
	logs := &endpointLog{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mux := http.NewServeMux()
	httpapi.MakeSSEHandler(mux, order.MakeStreamEndpoint(log, kitmw.Logging(logger, httpapi.Outcome), kitmw.Deadline(50*time.Millisecond)))
	srv := httptest.NewServer(reqid.Middleware(mux))
	t.Cleanup(srv.Close)
	return srv, logs
}

func TestStreams(t *testing.T) {
	id := order.NewID(time.Now())
	log := &eventLog{ready: true}
	log.add(id, order.StatusCreated)
	log.add(id, order.StatusAccepted)
	srv, logs := newStreamServer(t, log)

	// One order's stream outlives the call deadline, follows the order to its end, and is logged once, then.
	resp, err := http.Get(srv.URL + "/orders/" + id + "/events")
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	for range 2 {
		if _, err := lines.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // past the deadline
	if n := len(logs.get()); n != 0 {
		t.Fatalf("%d log lines while the stream is open, want none until it ends", n)
	}
	log.add(id, order.StatusBaking)
	log.add(id, order.StatusOutForDelivery)
	log.add(id, order.StatusDelivered)
	rest, err := io.ReadAll(lines)
	if err != nil || strings.Count(string(rest), "event: order") != 4 || !strings.Contains(string(rest), `"status":"DELIVERED"`) {
		t.Fatalf("rest of the stream %q (%v): want the remaining events to DELIVERED, then its end", rest, err)
	}
	waitForLines(t, logs, 1)
	if l := logs.get()[0]; l["endpoint"] != "stream_events" || l["outcome"] != kitmw.OutcomeOK {
		t.Errorf("logged %v, want stream_events ok", l)
	}

	tests := []struct {
		name, path, lastEventID string
		status                  int
		code                    string
		logged                  string // the outcome; "" for no endpoint call
	}{
		{"malformed order id", "/orders/nope/events", "", 404, orderapi.CodeNotFound, ""},
		{"bad Last-Event-ID", "/events", "x", 400, orderapi.CodeInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(logs.get())
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			if tt.lastEventID != "" {
				req.Header.Set("Last-Event-ID", tt.lastEventID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tt.status || body["code"] != tt.code {
				t.Errorf("%d %v, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if n := len(logs.get()); n != before {
				t.Errorf("%d endpoint calls logged, want none", n-before)
			}
		})
	}
}

// While the event path cannot serve streams, they are refused with 503: an endpoint call like any other.
func TestStreams_notReady(t *testing.T) {
	srv, logs := newStreamServer(t, &eventLog{})
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || body["code"] != orderapi.CodeUnavailable {
		t.Errorf("%d %v, want 503 unavailable with Retry-After", resp.StatusCode, body)
	}
	waitForLines(t, logs, 1)
	if l := logs.get()[0]; l["endpoint"] != "stream_events" || l["outcome"] != kitmw.OutcomeServerError {
		t.Errorf("logged %v, want stream_events server_error", l)
	}
}

func waitForLines(t *testing.T, logs *endpointLog, n int) {
	t.Helper()
	testkit.EventuallyEvery(t, 5*time.Second, 5*time.Millisecond, "log lines", func() error {
		if got := len(logs.get()); got < n {
			return fmt.Errorf("%d log lines, want %d", got, n)
		}
		return nil
	})
	if got := len(logs.get()); got != n {
		t.Fatalf("%d log lines, want %d", got, n)
	}
}
