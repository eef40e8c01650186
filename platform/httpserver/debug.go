package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ServeDebug listens on addr for pprof and returns serve, which serves until ctx is done (run it in the
// service's errgroup). It refuses a non-loopback address: profiles expose memory contents. An empty addr
// serves nothing.
func ServeDebug(ctx context.Context, addr string, logger *slog.Logger) (serve func() error, err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return ServeLoopback(ctx, "pprof", addr, mux, logger)
}

// ServeLoopback listens on addr for operators' endpoints (metrics, profiles) that must stay off the public
// listener, and returns serve, which serves h until ctx is done. Listening first makes a taken or refused
// address an error at start-up. It refuses a non-loopback address. An empty addr serves nothing.
func ServeLoopback(ctx context.Context, what, addr string, h http.Handler, logger *slog.Logger) (serve func() error, err error) {
	if addr == "" {
		return func() error { return nil }, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%s address %q must be on loopback, e.g. 127.0.0.1:6060", what, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	logger.Info(what+" listening", "addr", ln.Addr().String())
	return func() error {
		srv := &http.Server{Handler: noSniff(h), ReadHeaderTimeout: 5 * time.Second}
		stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
		defer stop()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}, nil
}
