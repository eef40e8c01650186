package httpserver

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"
)

// Check is one dependency readiness depends on; it must answer within the context's deadline.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Health answers liveness and readiness. Readiness is false until SetReady(true), false again once shutdown
// starts, and false while any check fails.
type Health struct {
	ready   atomic.Bool
	checks  []Check
	timeout time.Duration
}

// NewHealth returns a Health that is not ready yet.
func NewHealth(checks ...Check) *Health {
	return &Health{checks: checks, timeout: 2 * time.Second}
}

// SetReady flips readiness.
func (h *Health) SetReady(v bool) { h.ready.Store(v) }

// Ready reports readiness, running the checks.
func (h *Health) Ready(ctx context.Context) (bool, string) {
	if !h.ready.Load() {
		return false, "starting or shutting down"
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	for _, c := range h.checks {
		if err := c.Fn(ctx); err != nil {
			return false, c.Name + " not ready"
		}
	}
	return true, ""
}

// Register adds /health/livez and /health/readyz to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /health/livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /health/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ok, reason := h.Ready(r.Context()); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(reason + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
