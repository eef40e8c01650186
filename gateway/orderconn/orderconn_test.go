package orderconn_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/gateway/orderconn"
)

// The pool holds MaxConns connections and bounds the wait for an answer by Timeout.
func TestTransport(t *testing.T) {
	tr := orderconn.Transport(7, 3*time.Second)
	if tr.MaxConnsPerHost != 7 || tr.MaxIdleConns != 7 || tr.MaxIdleConnsPerHost != 7 {
		t.Errorf("connections %d, idle %d, idle per host %d; want 7 each", tr.MaxConnsPerHost, tr.MaxIdleConns, tr.MaxIdleConnsPerHost)
	}
	if tr.ResponseHeaderTimeout != 3*time.Second || tr.IdleConnTimeout <= 0 || tr.DialContext == nil || tr.ForceAttemptHTTP2 {
		t.Errorf("transport %+v: want the answer bounded by the timeout, idle connections closed, HTTP/1.1", tr)
	}
}

// A call whose connection drops before any answer (a sidecar restarting) is sent again, six times in all.
func TestNewRetriesADroppedCall(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // dropped before any answer
		}
	}))
	defer srv.Close()
	c, err := orderconn.New(orderconn.Config{URL: srv.URL, Timeout: 5 * time.Second, MaxConns: 4}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c.URL.String() != srv.URL || c.Transport == nil {
		t.Errorf("Conn URL %v, transport %v; want %s and the pool", c.URL, c.Transport, srv.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Orders.Menu(ctx); err == nil {
		t.Fatal("Menu succeeded on a connection that always drops")
	}
	if n := attempts.Load(); n != 6 {
		t.Errorf("%d attempts, want 6", n)
	}
}

func TestNewRefusesARelativeURL(t *testing.T) {
	if _, err := orderconn.New(orderconn.Config{URL: "/orders", Timeout: time.Second, MaxConns: 1}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("New accepted a URL without scheme and host")
	}
}

func TestUpstreamPort(t *testing.T) {
	tests := []struct {
		url  string
		port int
		err  string // "" for a port
	}{
		{"http://127.0.0.1:9191", 9191, ""},
		{"http://localhost:9000/base", 9000, ""},
		{"http://127.0.0.1", 0, "must name the sidecar upstream's port"},
		{"http://127.0.0.1:x", 0, "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			port, err := orderconn.Config{URL: tt.url}.UpstreamPort()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("UpstreamPort = %d, %v; want an error saying %q", port, err, tt.err)
				}
				return
			}
			if err != nil || port != tt.port {
				t.Errorf("UpstreamPort = %d, %v; want %d", port, err, tt.port)
			}
		})
	}
}
