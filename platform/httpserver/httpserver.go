// Package httpserver runs an http.Server with every timeout set and the shutdown sequence operators expect:
// on a signal, readiness turns false, in-flight requests drain, then the server stops within a deadline.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Config holds the server's timeouts. Each service embeds it next to its own listen address.
type Config struct {
	ReadHeaderTimeout time.Duration `conf:"default:5s"`
	ReadTimeout       time.Duration `conf:"default:10s"`
	WriteTimeout      time.Duration `conf:"default:15s"`
	IdleTimeout       time.Duration `conf:"default:120s"`
	// DrainDelay is how long the server keeps serving after readiness turns false, so that health checkers
	// and load balancers stop sending traffic before the listener closes.
	DrainDelay      time.Duration `conf:"default:1s"`
	ShutdownTimeout time.Duration `conf:"default:20s"`
}

// New returns an http.Server for h with cfg's timeouts. Every response says X-Content-Type-Options:
// nosniff, errors of the server's own included.
func New(cfg Config, h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           noSniff(h),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Run serves on ln (TLS when tlsConfig is not nil) until ctx is done, then drains and shuts down.
// beforeShutdown runs first (mark not ready, deregister); Run returns when the server has stopped.
func Run(ctx context.Context, srv *http.Server, ln net.Listener, tlsConfig *tls.Config, cfg Config,
	logger *slog.Logger, beforeShutdown func()) error {
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String(), "tls", tlsConfig != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "drain_delay", cfg.DrainDelay, "timeout", cfg.ShutdownTimeout)
	if beforeShutdown != nil {
		beforeShutdown()
	}
	time.Sleep(cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// noSniff stops browsers from guessing a response's type: a JSON error echoing input must never be run
// as a script or rendered as HTML.
func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// StrictTransport adds Strict-Transport-Security to every response, so browsers that have seen the site
// once never reach it over plain HTTP again. Only for a server on TLS; maxAge ≤ 0 adds nothing.
func StrictTransport(maxAge time.Duration, next http.Handler) http.Handler {
	if maxAge <= 0 {
		return next
	}
	value := "max-age=" + strconv.Itoa(int(maxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", value)
		next.ServeHTTP(w, r)
	})
}

// AccessLog logs one line per request: never the query string or body, which can carry tokens and PII.
func AccessLog(logger *slog.Logger, requestID func(context.Context) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		level := slog.LevelInfo
		switch {
		case sw.status >= 500:
			level = slog.LevelWarn
		case strings.HasPrefix(r.URL.Path, "/health/"):
			// Consul and the scripts probe every second or two: at INFO the access log would be mostly probes.
			level = slog.LevelDebug
		}
		logger.LogAttrs(r.Context(), level, "http request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("took", time.Since(start)),
			slog.String("request_id", requestID(r.Context())),
		)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines of the real writer (server-sent events).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
