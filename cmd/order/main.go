// Command order runs the order service, or applies its database migrations.
//
//	order [flags] serve     serve the order API (default)
//	order [flags] migrate   bring the schema up to date, then exit
//
// Every flag has an ORDER_* environment variable; see `order --help`.
package main

import (
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
	"syscall"

	"github.com/ardanlabs/conf/v3"
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/platform/applog"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/reqid"
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
	// DBCredentialsFile holds "user:password" for running without Vault (local development).
	DBCredentialsFile string `conf:"help:file holding user:password of the database user"`
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

	if cfg.DBCredentialsFile == "" {
		return errors.New("no database credentials: set ORDER_DB_CREDENTIALS_FILE")
	}
	db, err := mysqlconn.Open(cfg.DB, mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile})
	if err != nil {
		return err
	}
	defer db.Close()

	switch cmd := cfg.Args.Num(0); cmd {
	case "migrate":
		applied, err := mysqlstore.Migrate(ctx, db)
		if err != nil {
			return err
		}
		logger.Info("schema up to date", "applied", applied)
		return nil
	case "", "serve":
		return serve(ctx, cfg, logger, db)
	default:
		return fmt.Errorf("unknown command %q (want serve or migrate)", cmd)
	}
}

func serve(ctx context.Context, cfg config, logger *slog.Logger, db *sql.DB) error {
	svc := order.NewService(mysqlstore.New(db), order.DefaultMenu)
	duration := kitprometheus.NewHistogramFrom(prometheus.HistogramOpts{
		Namespace: "pizza", Subsystem: "order", Name: "request_duration_seconds",
		Help: "Time spent in order endpoints, by method and outcome.",
	}, []string{"method", "outcome"})
	endpoints := order.MakeServerEndpoints(svc,
		kitmw.Instrumenting(duration, order.Outcome),
		kitmw.Logging(logger, order.Outcome),
	)

	health := httpserver.NewHealth(httpserver.Check{Name: "database", Fn: db.PingContext})
	mux := http.NewServeMux()
	health.Register(mux)
	mux.Handle("GET /metrics", promhttp.Handler())
	order.MakeHTTPHandler(mux, endpoints)
	handler := reqid.Middleware(httpserver.AccessLog(logger, reqid.FromContext, mux))

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return err
	}
	health.SetReady(true)
	srv := httpserver.New(cfg.HTTP.Config, handler, logger)
	return httpserver.Run(ctx, srv, ln, nil, cfg.HTTP.Config, logger, func() { health.SetReady(false) })
}
