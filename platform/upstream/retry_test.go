package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// flaky answers after dropping the first `drops` connections without a response (a sidecar restarting).
func flaky(t *testing.T, drops int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var seen atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if seen.Add(1) <= drops {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		key       string
		drops     int32
		wantOK    bool
		wantTries int32
	}{
		{name: "POST with Idempotency-Key is sent again", method: "POST", key: "k1", drops: 2, wantOK: true, wantTries: 3},
		{name: "GET is sent again", method: "GET", drops: 1, wantOK: true, wantTries: 2},
		{name: "POST without a key is not", method: "POST", drops: 1, wantOK: false, wantTries: 1},
		{name: "attempts are bounded", method: "POST", key: "k2", drops: 10, wantOK: false, wantTries: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, seen := flaky(t, tt.drops)
			c := &http.Client{Transport: &Retry{Next: &http.Transport{}, Attempts: 4, Backoff: time.Millisecond}}
			req, _ := http.NewRequest(tt.method, srv.URL, strings.NewReader("body"))
			if tt.method == "GET" {
				req, _ = http.NewRequest(tt.method, srv.URL, nil)
			}
			if tt.key != "" {
				req.Header.Set(IdempotencyKeyHeader, tt.key)
			}
			resp, err := c.Do(req)
			if resp != nil {
				defer resp.Body.Close()
			}
			if ok := err == nil && resp.StatusCode == 200; ok != tt.wantOK {
				t.Fatalf("answered: %v (err %v); want %v", ok, err, tt.wantOK)
			}
			if tt.method == "POST" && tt.wantOK {
				if b, _ := io.ReadAll(resp.Body); string(b) != "body" {
					t.Errorf("the retry sent body %q; want the whole body again", b)
				}
			}
			if got := seen.Load(); got != tt.wantTries {
				t.Errorf("server saw %d attempts; want %d", got, tt.wantTries)
			}
		})
	}
}

// A connection that cannot be opened is retried whatever the request: nothing was sent.
func TestRetryDialFailure(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)) // reserved, never bound: every dial is refused
	var retries atomic.Int32
	c := &http.Client{Transport: &Retry{Next: &http.Transport{}, Attempts: 3, Backoff: time.Millisecond,
		OnRetry: func(*http.Request, error) { retries.Add(1) }}}
	req, _ := http.NewRequest("POST", "http://"+addr, strings.NewReader("x"))
	if _, err := c.Do(req); err == nil {
		t.Fatal("a refused connection answered")
	}
	if retries.Load() != 2 {
		t.Errorf("retried %d times; want 2 (3 attempts)", retries.Load())
	}
}

// A request whose context ends is not retried past it.
func TestRetryStopsAtDeadline(t *testing.T) {
	srv, seen := flaky(t, 100)
	c := &http.Client{Transport: &Retry{Next: &http.Transport{}, Attempts: 100, Backoff: 20 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if _, err := c.Do(req); err == nil {
		t.Fatal("answered")
	}
	if n := seen.Load(); n > 6 {
		t.Errorf("%d attempts within 100 ms at a doubling 20 ms backoff; the deadline did not bound them", n)
	}
}
