package httpserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ServeDebug serves pprof on addr until ctx is done. It refuses a non-loopback address: profiles expose
// memory contents. An empty addr serves nothing.
func ServeDebug(ctx context.Context, addr string, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return ServeLoopback(ctx, "pprof", addr, mux, logger)
}

// ServeLoopback serves h on addr until ctx is done, for operators' endpoints (metrics, profiles) that must
// stay off the public listener. It refuses a non-loopback address. An empty addr serves nothing.
func ServeLoopback(ctx context.Context, what, addr string, h http.Handler, logger *slog.Logger) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s address %q must be on loopback, e.g. 127.0.0.1:6060", what, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: noSniff(h), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	logger.Info(what+" listening", "addr", ln.Addr().String())
	go func() { _ = srv.Serve(ln) }()
	return nil
}
