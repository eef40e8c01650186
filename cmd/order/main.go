// Command order runs the order service, or applies its database migrations.
//
//	order [flags] serve     serve the order API (default)
//	order [flags] migrate   bring the schema up to date, then exit
//
// Every flag has an ORDER_* environment variable; see `order --help`.
package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/ardanlabs/conf/v3"
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/platform/applog"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/vaultcreds"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type config struct {
	conf.Version
	Args conf.Args
	Log  struct {
		Level string `conf:"default:info"`
	}
	HTTP struct {
		// Addr stays on loopback: the order service is reached only through its sidecar.
		Addr string `conf:"default:127.0.0.1:9090"`
		httpserver.Config
	}
	DB mysqlconn.Config
	// DBCredentialsFile holds "user:password": for `migrate`, and for serving without Vault.
	DBCredentialsFile string `conf:"help:file holding user:password of the database user (when not using Vault)"`
	// Vault is used for database credentials when its role_id file is set.
	Vault  vaultcreds.Config
	Consul struct {
		// Addr of the local Consul agent; empty means: do not register (no mesh).
		Addr string `conf:"help:Consul agent address like http://127.0.0.1:8500 (empty: no mesh)"`
	}
	Service struct {
		ID string `conf:"help:Consul service instance ID (default: order-<host>-<port>)"`
	}
}

func main() {
	if err := run(context.Background(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stderr io.Writer) error {
	var cfg config
	cfg.Version.Desc = "Pizza Joint order service"
	help, err := conf.Parse("ORDER", &cfg)
	if errors.Is(err, conf.ErrHelpWanted) {
		fmt.Fprintln(stderr, help)
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := applog.New(stderr, "order", cfg.Log.Level)
	if err != nil {
		return err
	}
	if s, err := conf.String(&cfg); err == nil {
		logger.Info("config", "values", s)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	switch cmd := cfg.Args.Num(0); cmd {
	case "migrate":
		return migrate(ctx, cfg, logger)
	case "", "serve":
		return serve(ctx, cfg, logger)
	default:
		return fmt.Errorf("unknown command %q (want serve or migrate)", cmd)
	}
}

// migrate runs with its own short-lived DDL credentials from a file: the runtime role cannot change the schema.
func migrate(ctx context.Context, cfg config, logger *slog.Logger) error {
	if cfg.DBCredentialsFile == "" {
		return errors.New("migrate needs ORDER_DB_CREDENTIALS_FILE (credentials allowed to change the schema)")
	}
	db, err := mysqlconn.Open(cfg.DB, mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile})
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := mysqlstore.Migrate(ctx, db)
	if err != nil {
		return err
	}
	logger.Info("schema up to date", "applied", applied)
	return nil
}

func serve(ctx context.Context, cfg config, logger *slog.Logger) error {
	db, checks, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()

	svc := order.NewService(mysqlstore.New(db), order.DefaultMenu)
	duration := kitprometheus.NewHistogramFrom(prometheus.HistogramOpts{
		Namespace: "pizza", Subsystem: "order", Name: "request_duration_seconds",
		Help: "Time spent in order endpoints, by method and outcome.",
	}, []string{"method", "outcome"})
	endpoints := order.MakeServerEndpoints(svc,
		kitmw.Instrumenting(duration, order.Outcome),
		kitmw.Logging(logger, order.Outcome),
	)

	health := httpserver.NewHealth(append(checks, httpserver.Check{Name: "database", Fn: db.PingContext})...)
	mux := http.NewServeMux()
	health.Register(mux)
	mux.Handle("GET /metrics", promhttp.Handler())
	order.MakeHTTPHandler(mux, endpoints)
	handler := reqid.Middleware(httpserver.AccessLog(logger, reqid.FromContext, mux))

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	deregister, err := register(ctx, cfg, ln.Addr().String(), logger)
	if err != nil {
		ln.Close()
		return err
	}
	health.SetReady(true)
	srv := httpserver.New(cfg.HTTP.Config, handler, logger)
	return httpserver.Run(ctx, srv, ln, nil, cfg.HTTP.Config, logger, func() {
		health.SetReady(false)
		deregister()
	})
}

// openDatabase opens the pool on Vault's dynamic credentials, or on a credentials file without Vault. The
// returned checks make readiness false while no unexpired credentials are at hand.
func openDatabase(ctx context.Context, cfg config, logger *slog.Logger) (*sql.DB, []httpserver.Check, error) {
	if cfg.Vault.RoleIDFile == "" {
		if cfg.DBCredentialsFile == "" {
			return nil, nil, errors.New("no database credentials: set ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE " +
				"(Vault), or ORDER_DB_CREDENTIALS_FILE")
		}
		logger.Warn("database credentials from a file, not Vault: for development only")
		db, err := mysqlconn.Open(cfg.DB, mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile})
		return db, nil, err
	}
	src, err := vaultcreds.New(cfg.Vault, logger)
	if err != nil {
		return nil, nil, err
	}
	db, err := mysqlconn.Open(cfg.DB, src)
	if err != nil {
		return nil, nil, err
	}
	// Connections must not outlive their lease: keep their lifetime below half of each new lease's TTL.
	src.OnNewLease = func(ttl time.Duration) {
		db.SetConnMaxLifetime(max(min(cfg.DB.ConnMaxLifetime, ttl/2), time.Second))
	}
	go src.Run(ctx)
	return db, []httpserver.Check{{Name: "credentials", Fn: src.Ready}}, nil
}

// register adds this instance and its sidecar to Consul (when configured) and returns how to take them out.
func register(ctx context.Context, cfg config, listenAddr string, logger *slog.Logger) (func(), error) {
	if cfg.Consul.Addr == "" {
		logger.Warn("no Consul address: not registering, no mesh")
		return func() {}, nil
	}
	host, port, err := consulreg.HostPort(listenAddr)
	if err != nil {
		return nil, err
	}
	id := cmp.Or(cfg.Service.ID, consulreg.DefaultID("order", port))
	return consulreg.Join(ctx, cfg.Consul.Addr, consulreg.Instance{
		ID: id, Name: "order", Address: host, Port: port,
		CheckURL: fmt.Sprintf("http://%s/health/readyz", net.JoinHostPort(host, strconv.Itoa(port))),
	}, logger)
}
