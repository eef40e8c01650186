package httpserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var discard = slog.New(slog.DiscardHandler)

func TestNew(t *testing.T) {
	cfg := Config{ReadHeaderTimeout: 1 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 3 * time.Second, IdleTimeout: 4 * time.Second}
	srv := New(cfg, http.NotFoundHandler(), discard)
	if srv.ReadHeaderTimeout != cfg.ReadHeaderTimeout || srv.ReadTimeout != cfg.ReadTimeout ||
		srv.WriteTimeout != cfg.WriteTimeout || srv.IdleTimeout != cfg.IdleTimeout || srv.MaxHeaderBytes == 0 {
		t.Errorf("server timeouts %v %v %v %v, max header %d: want cfg's, and a header limit",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}
}

// Every response of a service says nosniff: its own answers and the mux's 404 and 405 alike.
func TestNew_noSniff(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /menu", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) })
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = New(Config{ReadHeaderTimeout: time.Second}, mux, discard)
	srv.Start()
	defer srv.Close()
	for _, tt := range []struct{ method, path string }{{"GET", "/menu"}, {"GET", "/nope"}, {"POST", "/menu"}} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("%d with X-Content-Type-Options %q, want nosniff", resp.StatusCode, got)
			}
		})
	}
}

func TestStrictTransport(t *testing.T) {
	tests := []struct {
		name   string
		maxAge time.Duration
		want   string
	}{
		{"a year", 8760 * time.Hour, "max-age=31536000"},
		{"off", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := StrictTransport(tt.maxAge, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusTeapot)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if got := rec.Header().Get("Strict-Transport-Security"); got != tt.want || rec.Code != http.StatusTeapot {
				t.Errorf("Strict-Transport-Security = %q (status %d), want %q", got, rec.Code, tt.want)
			}
		})
	}
}

// Run's shutdown: beforeShutdown first, then the in-flight request finishes, then Run returns.
func TestRun_drainsInFlightRequests(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var notReady atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	cfg := Config{ReadHeaderTimeout: time.Second, DrainDelay: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, New(cfg, h, discard), ln, nil, cfg, discard, func() { notReady.Store(true) }) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	time.Sleep(50 * time.Millisecond)
	if !notReady.Load() {
		t.Error("beforeShutdown not called when shutdown began")
	}
	select {
	case err := <-ran:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request got %q, want done", body)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the last request")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after Run returned")
	}
}

func TestRun_shutdownTimeout(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { close(started); select {} })
	cfg := Config{ReadHeaderTimeout: time.Second, ShutdownTimeout: 50 * time.Millisecond}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, New(cfg, h, discard), ln, nil, cfg, discard, nil) }()
	go func() { _, _ = http.Get("http://" + ln.Addr().String()) }()
	<-started
	cancel()
	select {
	case err := <-ran:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run = %v, want the shutdown deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run waited past its shutdown timeout for a stuck request")
	}
}

func TestAccessLog(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	tests := []struct {
		name   string
		status int
		level  string
	}{
		{"ok", 200, "level=INFO"},
		{"client error", 404, "level=INFO"},
		{"server error", 503, "level=WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			h := AccessLog(logger, func(context.Context) string { return "req-9" }, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte("12345"))
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/pizza/01ARZ?token=secret-token", nil))
			line := logs.String()
			for _, want := range []string{tt.level, "method=GET", "path=/pizza/01ARZ", "status=" + strconv.Itoa(tt.status), "bytes=5", "request_id=req-9"} {
				if !strings.Contains(line, want) {
					t.Errorf("log %q lacks %q", line, want)
				}
			}
			if strings.Contains(line, "secret-token") {
				t.Errorf("log %q holds the query string", line)
			}
		})
	}
}

// The status writer must pass Flush and deadlines through (streams rely on them).
func TestAccessLog_unwrap(t *testing.T) {
	h := AccessLog(discard, func(context.Context) string { return "" }, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the access log: %v", err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}

func TestHealth(t *testing.T) {
	var dbDown atomic.Bool
	h := NewHealth(Check{Name: "database", Fn: func(context.Context) error {
		if dbDown.Load() {
			return errors.New("connection refused")
		}
		return nil
	}})
	mux := http.NewServeMux()
	h.Register(mux)
	steps := []struct {
		name   string
		do     func()
		path   string
		status int
		body   string
	}{
		{"live while starting", nil, "/health/livez", 200, "ok"},
		{"not ready while starting", nil, "/health/readyz", 503, "starting"},
		{"ready", func() { h.SetReady(true) }, "/health/readyz", 200, "ready"},
		{"a check fails", func() { dbDown.Store(true) }, "/health/readyz", 503, "database not ready"},
		{"the check recovers", func() { dbDown.Store(false) }, "/health/readyz", 200, "ready"},
		{"shutting down", func() { h.SetReady(false) }, "/health/readyz", 503, "shutting down"},
		{"still live", nil, "/health/livez", 200, "ok"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.do != nil {
				s.do()
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", s.path, nil))
			if rec.Code != s.status || !strings.Contains(rec.Body.String(), s.body) {
				t.Errorf("%s = %d %q, want %d with %q", s.path, rec.Code, rec.Body, s.status, s.body)
			}
			if strings.Contains(rec.Body.String(), "connection refused") {
				t.Errorf("readiness tells the world why: %q", rec.Body)
			}
		})
	}
}

func TestServeLoopback(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{"off", "", false},
		{"every interface", ":0", true},
		{"all addresses", "0.0.0.0:0", true},
		{"a public address", "192.0.2.1:0", true},
		{"a host name", "example.com:0", true},
		{"no port", "127.0.0.1", true},
		{"loopback", "127.0.0.1:0", false},
		{"IPv6 loopback", "[::1]:0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := ServeLoopback(ctx, "metrics", tt.addr, http.NotFoundHandler(), discard)
			if tt.name == "IPv6 loopback" && err != nil && strings.Contains(err.Error(), "cannot assign") {
				t.Skip("no IPv6 loopback here")
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("ServeLoopback(%q) = %v, want error %v", tt.addr, err, tt.wantErr)
			}
		})
	}
	t.Run("serves until ctx ends", func(t *testing.T) {
		var logs bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metric 1\n")) })
		serve, err := ServeLoopback(ctx, "metrics", "127.0.0.1:0", h, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- serve() }()
		addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(logs.String())
		if addr == nil {
			t.Fatalf("no address logged: %s", logs.String())
		}
		resp, err := http.Get("http://" + addr[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "metric 1\n" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("got %q %v", b, resp.Header)
		}
		cancel()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr[1], time.Second)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("still serving after ctx ended")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := <-served; err != nil {
			t.Errorf("serve returned %v after ctx ended; want nil", err)
		}
	})
}

// Probes of /health/ are logged at DEBUG (they come every second or two), other requests at INFO, and any 5xx
// at WARN, a failing probe included.
func TestAccessLogLevels(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := AccessLog(logger, func(context.Context) string { return "rid" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	for _, tt := range []struct{ url, level string }{
		{"/health/readyz", "DEBUG"},
		{"/health/readyz?fail=1", "WARN"},
		{"/menu", "INFO"},
	} {
		buf.Reset()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tt.url, nil))
		if !strings.Contains(buf.String(), `"level":"`+tt.level+`"`) {
			t.Errorf("%s logged as %s; want %s", tt.url, buf.String(), tt.level)
		}
	}
}
