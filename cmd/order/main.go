// Command order runs the order service, or applies its database migrations.
//
//	order [flags] serve        serve the order API (default)
//	order [flags] migrate      bring the schema up to date and maintain the partitions, then exit (needs DDL
//	                           credentials in a file)
//	order [flags] maintain-partitions
//	                           add the coming months' partitions, drop expired ones, purge expired idempotency
//	                           keys; once, or every ORDER_PARTITIONS_EVERY until stopped (DDL credentials)
//	order [flags] rewrap-pii   rewrap stored PII data keys to the newest transit key version, then exit
//
// Flags go before the command (`order --help`, not `order serve --help`).
// Every flag has an ORDER_* environment variable; see `order --help`.
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
	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/mysqlstore/partitions"
	"github.com/pizzajoint/mesh/order/orderdb"
	"github.com/pizzajoint/mesh/order/orderevents"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/svcmain"
	"github.com/pizzajoint/mesh/platform/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

type config struct {
	conf.Version
	Args conf.Args
	svcmain.Common
	HTTP struct {
		// Addr stays on loopback: the order service is reached only through its sidecar.
		Addr string `conf:"default:127.0.0.1:9090"`
		httpserver.Config
	}
	orderdb.Config                    // the database and its credentials: ORDER_DB_*, ORDER_VAULT_*, ORDER_PII_*
	Events         orderevents.Config // the event path: ORDER_EVENTS_*
	// Partitions: the monthly partitions' maintenance (migrate, maintain-partitions), which needs DDL rights.
	Partitions struct {
		partitions.Policy
		Every time.Duration `conf:"default:0s,help:maintain-partitions runs this often until stopped (0: once)"`
	}
	Consul struct {
		// Addr of the local Consul agent; empty means: do not register (no mesh).
		Addr string `conf:"help:Consul agent address like http://127.0.0.1:8500 (empty: no mesh)"`
		// TokenFile holds this instance's Consul token (service identity), delivered by meshctl.
		TokenFile string `conf:"help:file holding this instance's Consul ACL token"`
		// AdvertiseNode: the agent is the pod's own (Compose), so the sidecar is advertised at the pod's address.
		AdvertiseNode bool `conf:"default:false,help:advertise the Consul node's address (a pod's) instead of loopback"`
	}
	Service struct {
		ID string `conf:"help:Consul service instance ID (default: order-<host>-<port>)"`
	}
	Test testHooks // test-only, see testhook.go
}

func main() { svcmain.Main("order", run) }

func run(ctx context.Context, stderr io.Writer) error {
	var cfg config
	cfg.Version.Desc = "Pizza Joint order service"
	p, err := svcmain.Start(ctx, stderr, "order", "ORDER", &cfg)
	if err != nil {
		return err
	}
	return p.Finish(command(p, cfg))
}

func command(p *svcmain.Process, cfg config) error {
	ctx, logger := p.Ctx, p.Logger
	switch cmd := cfg.Args.Num(0); cmd {
	case "migrate", "maintain-partitions":
		return maintainSchema(ctx, cfg, cmd, logger)
	case "rewrap-pii":
		return rewrapPII(ctx, cfg, logger)
	case "", "serve":
		return serve(p, cfg)
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate, maintain-partitions or rewrap-pii)", cmd)
	}
}

// serve runs the order API until the process ends. Its background work (the event relay, the replica monitor,
// the Consul registration) runs in the process's errgroup and is joined before the pools close.
func serve(p *svcmain.Process, cfg config) (err error) {
	ctx, logger := p.Ctx, p.Logger
	b, err := orderdb.Open(ctx, cfg.Config, logger, cfg.Test.storeOptions(logger)...)
	if err != nil {
		return err
	}
	defer b.Close()
	events, err := orderevents.Open(ctx, cfg.Events, b.Store, prometheus.DefaultRegisterer, logger)
	if err != nil {
		return err
	}
	defer events.Close()
	// Every goroutine below uses the pools and the event path: they all end, and are joined, before b.Close runs.
	g, ctx := errgroup.WithContext(ctx)
	ctx, stopWork := context.WithCancel(ctx)
	defer func() {
		stopWork()
		if werr := g.Wait(); err == nil {
			err = werr
		}
	}()

	svc := order.NewService(events.Store, order.DefaultMenu)
	durationVec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pizza", Subsystem: "order", Name: "request_duration_seconds",
		Help: "Time spent in order endpoints, by method and outcome.",
	}, []string{"method", "outcome"})
	prometheus.MustRegister(durationVec)
	duration := kitmw.NewExemplars(durationVec)
	// The event streams go through the same middleware as every other endpoint.
	mw := []func(string) endpoint.Middleware{
		kitmw.Instrumenting(duration, httpapi.Outcome),
		kitmw.Logging(logger, httpapi.Outcome),
	}
	endpoints := order.MakeServerEndpoints(svc, mw...)
	g.Go(func() error { return events.Run(ctx) })
	g.Go(func() error { b.Store.MonitorReplica(ctx); return nil })

	checks := append(b.Checks, httpserver.Check{Name: "database", Fn: b.DB.PingContext})
	health := httpserver.NewHealth(append(checks, events.Checks...)...)
	mux := http.NewServeMux()
	health.Register(mux)
	mux.Handle("GET /metrics", httpserver.MetricsHandler())
	httpapi.MakeHTTPHandler(mux, endpoints)
	endStreams := httpapi.MakeSSEHandler(mux, order.MakeStreamEndpoint(events.Streams, mw...))
	handler := tracing.Server("order", false, mux, reqid.Middleware(httpserver.AccessLog(logger, reqid.FromContext, mux)))

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
	g.Go(func() error { keepRegistered(); return nil })
	health.SetReady(true)
	srv := httpserver.New(cfg.HTTP.Config, handler, logger)
	srv.RegisterOnShutdown(endStreams) // clients reconnect with Last-Event-ID to another replica or after the restart
	return httpserver.Run(ctx, srv, ln, nil, cfg.HTTP.Config, logger, func() {
		health.SetReady(false)
		deregister()
	})
}

// register adds this instance and its sidecar to Consul (when configured); it returns how to keep them
// registered (run it until deregister) and how to take them out.
func register(ctx context.Context, cfg config, listenAddr string, logger *slog.Logger) (keep, deregister func(), err error) {
	if cfg.Consul.Addr == "" {
		logger.Warn("no Consul address: not registering, no mesh")
		return func() {}, func() {}, nil
	}
	host, port, err := consulreg.HostPort(listenAddr)
	if err != nil {
		return nil, nil, err
	}
	upstreams, err := cfg.Events.Upstreams()
	if err != nil {
		return nil, nil, err
	}
	traces, err := cfg.Trace.Upstreams()
	if err != nil {
		return nil, nil, err
	}
	upstreams = append(upstreams, traces...)
	id := cmp.Or(cfg.Service.ID, consulreg.DefaultID("order", port))
	return consulreg.Join(ctx, cfg.Consul.Addr, consulreg.Instance{
		ID: id, Name: "order", Address: host, Port: port, Upstreams: upstreams, TokenFile: cfg.Consul.TokenFile, AdvertiseNode: cfg.Consul.AdvertiseNode,
		CheckURL: fmt.Sprintf("http://%s/health/readyz", net.JoinHostPort(host, strconv.Itoa(port))),
	}, logger)
}
