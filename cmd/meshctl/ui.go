package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/tlsreload"
)

// uiConfig is where the operators' HTTPS front for Consul listens.
type uiConfig struct {
	Addr     string `conf:"default:0.0.0.0:8501"`
	CertFile string `conf:"default:certs/consul.pem"`
	KeyFile  string `conf:"default:certs/consul-key.pem"`
}

// refusedPaths are agent endpoints the front never forwards. Consul's agent answers a leaf certificate (with
// its private key) from its cache without checking the caller's token once a sidecar holds it; behind this
// front nobody needs one.
var refusedPaths = []string{"/v1/agent/connect/ca/leaf/"}

// serveUI serves Consul's UI and HTTP API over TLS to operators, forwarding to the agent's unix socket (or
// address). Every request keeps its own token; Consul's ACLs (default deny) decide.
func serveUI(ctx context.Context, cfg uiConfig, agent string, logger *slog.Logger) error {
	target, transport, err := agentTransport(agent)
	if err != nil {
		return err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = "consul"
		},
		Transport: transport,
		ErrorLog:  slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		for _, p := range refusedPaths {
			if strings.HasPrefix(r.URL.Path, p) {
				http.Error(w, "Permission denied: not served to operators (ask the local agent as the service)", http.StatusForbidden)
				logger.Warn("refused a request for a service's leaf certificate", "path", r.URL.Path, "remote", r.RemoteAddr)
				return
			}
		}
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		proxy.ServeHTTP(w, r)
	})
	certs, err := tlsreload.New(cfg.CertFile, cfg.KeyFile, logger)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	runCtx, stopCerts := context.WithCancel(ctx)
	defer stopCerts()
	certsDone := make(chan struct{})
	go func() { certs.Run(runCtx); close(certsDone) }()
	defer func() { stopCerts(); <-certsDone }()

	srv := &http.Server{Addr: cfg.Addr, Handler: mux, TLSConfig: certs.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 10 * time.Minute, IdleTimeout: 2 * time.Minute}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	logger.Info("consul UI front listening", "addr", ln.Addr().String(), "agent", agent)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// agentTransport reaches the agent at addr: unix:///path or http://host:port.
func agentTransport(addr string) (*url.URL, http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		return &url.URL{Scheme: "http", Host: "consul"}, tr, nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, nil, fmt.Errorf("consul agent address %q: want unix:///path or http://host:port", addr)
	}
	return u, tr, nil
}
