// Package consulfront fronts the Consul agent's HTTP API so that a caller gets no Connect leaf certificate (with
// its private key) but that of the one service its front is for.
//
// Why fronts: Consul's agent answers /v1/agent/connect/ca/leaf/<service> (certificate and private key) from its
// cache, keyed by service name alone, without checking the caller's token once a sidecar holds that certificate.
// So whoever can reach the agent's API can take any running service's identity. The agent's own socket is
// root's alone; each service's user reaches the agent through a front that passes its own service's leaf and
// refuses the others, and operators reach the UI over HTTPS through a front that passes none. Everything else
// is forwarded with the caller's token, and Consul's ACLs decide.
package consulfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/tlsreload"
)

// Config is one front of the Consul agent's API: where it listens and which leaf certificates pass.
type Config struct {
	// Listen is unix:///path (a socket owned by Owner, mode 0600) or host:port (TLS with CertFile/KeyFile).
	Listen   string `conf:"help:unix:///path or host:port"`
	Owner    string `conf:"help:user owning the unix socket"`
	CertFile string `conf:"help:TLS certificate for a TCP listener"`
	KeyFile  string `conf:"help:TLS key for a TCP listener"`
	// LeafFor is the one service whose leaf certificate passes ("" for none).
	LeafFor string `conf:"help:the only service whose leaf certificate this front passes"`
}

const leafPrefix = "/v1/agent/connect/ca/leaf/"

// Handler forwards to the agent, refusing leaf certificates of every service but leafFor.
func Handler(agent string, leafFor string, hsts bool, logger *slog.Logger) (http.Handler, error) {
	target, transport, err := agentTransport(agent)
	if err != nil {
		return nil, err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = "consul"
		},
		Transport:     transport,
		FlushInterval: -1, // blocking queries and watches stream
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// What is checked is what is forwarded: the cleaned path, never a raw form the agent might read otherwise.
		clean := path.Clean("/" + r.URL.Path)
		// Clean drops a trailing slash, which the UI needs: the agent redirects /ui to /ui/, so without it the
		// front would send browsers round that redirect forever.
		if strings.HasSuffix(r.URL.Path, "/") && clean != "/" {
			clean += "/"
		}
		r.URL.Path, r.URL.RawPath = clean, ""
		if svc, ok := strings.CutPrefix(r.URL.Path, leafPrefix); ok && (leafFor == "" || svc != leafFor) {
			logger.Warn("refused a request for a leaf certificate", "service", svc, "remote", r.RemoteAddr)
			http.Error(w, "Permission denied: this front passes no leaf certificate of "+svc, http.StatusForbidden)
			return
		}
		if hsts {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return
		}
		proxy.ServeHTTP(w, r)
	}), nil
}

// Serve serves one front until ctx ends.
func Serve(ctx context.Context, cfg Config, agent string, logger *slog.Logger) error {
	logger = logger.With("front", cfg.Listen)
	sockPath, isUnix := strings.CutPrefix(cfg.Listen, "unix://")
	handler, err := Handler(agent, cfg.LeafFor, !isUnix, logger)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	var ln net.Listener
	if isUnix {
		if ln, err = ownedSocket(sockPath, cfg.Owner); err != nil {
			return err
		}
	} else {
		certs, err := tlsreload.New(cfg.CertFile, cfg.KeyFile, logger)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		certCtx, stopCerts := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { certs.Run(certCtx); close(done) }()
		defer func() { stopCerts(); <-done }()
		srv.TLSConfig = certs.TLSConfig()
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() {
		if isUnix {
			errc <- srv.Serve(ln)
		} else {
			errc <- srv.ServeTLS(ln, "", "")
		}
	}()
	logger.Info("consul front listening", "agent", agent, "leaf_for", cfg.LeafFor)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // blocking queries end with the server
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ownedSocket listens on a unix socket that only owner may open.
func ownedSocket(path, owner string) (net.Listener, error) {
	if owner == "" {
		return nil, errors.New("a unix socket front needs an owner (MESHCTL_FRONT_OWNER)")
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	_ = os.Remove(path) // a socket left by a killed front
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, uid, gid); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// agentTransport reaches the agent at addr: unix:///path or http://host:port.
func agentTransport(addr string) (*url.URL, http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
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
