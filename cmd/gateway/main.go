// Command gateway runs the public HTTPS edge of Pizza Joint. It calls the order service through the local
// Connect sidecar's upstream port. Every flag has a GATEWAY_* environment variable; see `gateway --help`.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ardanlabs/conf/v3"
	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/orderconn"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/gateway/stream"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/svcmain"
	"github.com/pizzajoint/mesh/platform/tlsreload"
	"github.com/pizzajoint/mesh/platform/tracing"
	"github.com/pizzajoint/mesh/platform/vaultauth"
	"github.com/prometheus/client_golang/prometheus"
)

type config struct {
	conf.Version
	svcmain.Common
	HTTP struct {
		Addr string `conf:"default::8443"`
		httpserver.Config
		// HSTSMaxAge is how long browsers keep to HTTPS for this site after a visit.
		HSTSMaxAge time.Duration `conf:"default:8760h"`
	}
	// Metrics.Addr serves Prometheus /metrics, on loopback only: never on the public listener.
	Metrics struct {
		Addr string `conf:"default:127.0.0.1:9464,help:metrics listen address on loopback (empty: off)"`
	}
	// Limits protect the edge from abuse; per client IP address unless said otherwise.
	Limits edge.Config
	TLS    struct {
		CertFile string `conf:"default:certs/server.pem"`
		KeyFile  string `conf:"default:certs/server-key.pem"`
	}
	Order  orderconn.Config
	Consul struct {
		Addr string `conf:"help:Consul agent address like http://127.0.0.1:8500 (empty: no mesh)"`
		// TokenFile holds this instance's Consul token (service identity), delivered by meshctl.
		TokenFile string `conf:"help:file holding this instance's Consul ACL token"`
		// AdvertiseNode: the agent is the pod's own (Compose), so the sidecar is advertised at the pod's address.
		AdvertiseNode bool `conf:"default:false,help:advertise the Consul node's address (a pod's) instead of loopback"`
	}
	// Vault is where staff token hashes come from (KV); without a login configured staff sign-in is off.
	Vault   vaultauth.Config
	Staff   staff.Config
	Service struct {
		ID string `conf:"help:Consul service instance ID (default: gateway-<host>-<port>)"`
	}
}

func main() { svcmain.Main("gateway", run) }

func run(ctx context.Context, stderr io.Writer) error {
	var cfg config
	cfg.Version.Desc = "Pizza Joint public gateway"
	p, err := svcmain.Start(ctx, stderr, "gateway", "GATEWAY", &cfg)
	if err != nil {
		return err
	}
	return p.Finish(serve(p, cfg))
}

// serve runs the edge until the process ends. Its background work (certificate reloads, the Vault login and
// the staff token hashes, the Consul registration) runs in the process's errgroup.
func serve(p *svcmain.Process, cfg config) error {
	ctx, logger := p.Ctx, p.Logger
	serveMetrics, err := httpserver.ServeLoopback(ctx, "metrics", cfg.Metrics.Addr, httpserver.MetricsHandler(), logger)
	if err != nil {
		// Metrics are for operators; a taken port must not keep the edge from serving customers.
		logger.Warn("metrics not served", "addr", cfg.Metrics.Addr, "err", err)
	} else {
		p.Go(serveMetrics)
	}

	certs, err := tlsreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, logger)
	if err != nil {
		return fmt.Errorf("tls: %w (run 'make certs' for a development certificate)", err)
	}
	p.Go(func() error { certs.Run(ctx); return nil })

	upstream, err := orderconn.New(cfg.Order, logger)
	if err != nil {
		return err
	}
	auth, runStaff, err := staff.FromVault(cfg.Vault, cfg.Staff, logger)
	if err != nil {
		return err
	}
	p.Go(func() error { runStaff(ctx); return nil })
	metrics := gateway.NewMetrics(prometheus.DefaultRegisterer)
	svc := gateway.NewService(upstream.Orders)
	endpoints := gateway.MakeEndpoints(svc,
		kitmw.Instrumenting(metrics.Duration, gateway.Outcome),
		kitmw.Logging(logger, gateway.Outcome),
		kitmw.Deadline(cfg.Order.Timeout),
	)

	// Readiness does not follow Vault or order: customers can order while Vault is away, and an order outage
	// is answered with 503s here rather than by taking the edge out of the catalog.
	health := httpserver.NewHealth()
	mux := http.NewServeMux()
	health.Register(mux)
	limits := cfg.Limits.Options(metrics.Refused)
	gateway.MakeHTTPHandler(mux, endpoints, auth, limits...)
	// The relay's calls carry the trace context too, so a stream's deliveries in order join the customer's trace.
	endStreams := gateway.MakeStreamHandler(mux, endpoints, auth, upstream.URL,
		tracing.Client(stream.Transport(upstream.Transport)), limits...)
	handler := httpserver.StrictTransport(cfg.HTTP.HSTSMaxAge,
		tracing.Server("gateway", true, mux, reqid.Middleware(httpserver.AccessLog(logger, reqid.FromContext, mux))))

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	keepRegistered, deregister, err := register(ctx, cfg, ln.Addr().String(), logger)
	if err != nil {
		ln.Close()
		return err
	}
	defer deregister() // if serving failed; at shutdown it has run already
	p.Go(func() error { keepRegistered(); return nil })
	health.SetReady(true)
	srv := httpserver.New(cfg.HTTP.Config, handler, logger)
	srv.RegisterOnShutdown(endStreams) // clients reconnect with Last-Event-ID to another gateway or after the restart
	return httpserver.Run(ctx, srv, ln, certs.TLSConfig(), cfg.HTTP.Config, logger, func() {
		health.SetReady(false)
		deregister()
	})
}

// register adds this instance to Consul with a sidecar whose upstream "order" listens where Order.URL points
// (and "jaeger" where the trace endpoint points, when spans go through the mesh).
func register(ctx context.Context, cfg config, listenAddr string, logger *slog.Logger) (keep, deregister func(), err error) {
	if cfg.Consul.Addr == "" {
		logger.Warn("no Consul address: not registering, no mesh; order is called directly", "order_url", cfg.Order.URL)
		return func() {}, func() {}, nil
	}
	host, port, err := consulreg.HostPort(listenAddr)
	if err != nil {
		return nil, nil, err
	}
	upstreamPort, err := cfg.Order.UpstreamPort()
	if err != nil {
		return nil, nil, err
	}
	traces, err := cfg.Trace.Upstreams()
	if err != nil {
		return nil, nil, err
	}
	return consulreg.Join(ctx, cfg.Consul.Addr, consulreg.Instance{
		ID: cmp.Or(cfg.Service.ID, consulreg.DefaultID("gateway", port)), Name: "gateway", Address: host, Port: port,
		TokenFile: cfg.Consul.TokenFile, AdvertiseNode: cfg.Consul.AdvertiseNode,
		CheckURL:  fmt.Sprintf("https://%s/health/readyz", net.JoinHostPort(host, strconv.Itoa(port))),
		Upstreams: append([]consulreg.Upstream{{Service: "order", LocalPort: upstreamPort}}, traces...),
	}, logger)
}
