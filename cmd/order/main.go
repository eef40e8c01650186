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
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ardanlabs/conf/v3"
	"github.com/go-kit/kit/endpoint"
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/dblease"
	"github.com/pizzajoint/mesh/platform/envelope"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/pizzajoint/mesh/platform/svcmain"
	"github.com/pizzajoint/mesh/platform/vaultauth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	DB mysqlconn.Config
	// DBReplica: reads (get one order, list) go to this replica when Addr is set; see mysqlstore.Replica.
	DBReplica struct {
		Addr string `conf:"help:address of a read replica of the database, host:port (empty: all reads on the primary)"`
		mysqlstore.ReplicaConfig
	}
	// Partitions: the monthly partitions' maintenance (migrate, maintain-partitions), which needs DDL rights.
	Partitions struct {
		Ahead int `conf:"default:3,help:months after the current one whose partitions are made in advance"`
		// RetentionMonths 0 keeps every month; N keeps the current month and N before it.
		RetentionMonths      int           `conf:"default:0,help:months of orders kept before the current one (0: all)"`
		IdempotencyRetention time.Duration `conf:"default:24h,help:how long an Idempotency-Key is remembered"`
		Every                time.Duration `conf:"default:0s,help:maintain-partitions runs this often until stopped (0: once)"`
	}
	// DBCredentialsFile holds "user:password": for `migrate`, and for serving without Vault.
	DBCredentialsFile string `conf:"help:file holding user:password of the database user (when not using Vault)"`
	// Vault is used for database credentials when a login is configured (an AppRole role_id file, or the
	// kubernetes auth method).
	Vault struct {
		vaultauth.Config
		// DBRole is the database role whose credentials the pool uses (order-migrate for the DDL commands).
		DBRole string `conf:"default:order"`
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
	// Test holds test-only hooks; each is inert unless set, and no deployment sets them.
	Test struct {
		// HoldCommitFile: while this file exists, every new order's transaction waits after its INSERTs and
		// before COMMIT (e2e/faults_test.go kills the process there).
		HoldCommitFile string `conf:"help:TEST ONLY: hold new orders' transactions before COMMIT while this file exists"`
	}
	// PII: customer phone and address are sealed with data keys from Vault transit (when Vault is used).
	PII struct {
		TransitMount string `conf:"default:transit"`
		TransitKey   string `conf:"default:orders-pii"`
		// KeyLifetime is how long one data key seals new orders before the next is asked for.
		KeyLifetime time.Duration `conf:"default:10m"`
	}
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
	case "migrate":
		return migrate(ctx, cfg, logger)
	case "maintain-partitions":
		return maintainPartitions(ctx, cfg, logger)
	case "rewrap-pii":
		return rewrapPII(ctx, cfg, logger)
	case "", "serve":
		return serve(p, cfg)
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate, maintain-partitions or rewrap-pii)", cmd)
	}
}

// rewrapPII re-encrypts stored PII data keys to the newest transit key version (after an operator rotated it).
// It logs in like the service: the runtime role may update orders, and its policy allows transit/rewrap.
func rewrapPII(ctx context.Context, cfg config, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	b, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer b.close()
	if b.waitReady == nil {
		return errors.New("rewrap-pii needs Vault (ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE, or ORDER_VAULT_AUTH_METHOD=kubernetes)")
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	changed, err := b.store.RewrapPII(ctx)
	if err != nil {
		return err
	}
	logger.Info("PII data keys rewrapped to the newest transit key version", "changed", changed)
	return nil
}

// openDDL opens a pool on the schema owner's credentials (ddlCredentials) for command; closeDB closes the pool,
// then gives the credentials back.
func openDDL(ctx context.Context, cfg config, command string, logger *slog.Logger) (db *sql.DB, closeDB func(), err error) {
	creds, release, err := ddlCredentials(ctx, cfg, command, logger)
	if err != nil {
		return nil, nil, err
	}
	db, err = mysqlconn.Open(cfg.DB, creds)
	if err != nil {
		release()
		return nil, nil, err
	}
	return db, func() { db.Close(); release() }, nil
}

// ddlCredentials are the schema owner's credentials for migrate and maintain-partitions: a short-lived
// order-migrate user from Vault (renewed while the command runs, revoked after), or a credentials file.
func ddlCredentials(ctx context.Context, cfg config, command string, logger *slog.Logger) (mysqlconn.CredentialSource, func(), error) {
	if !cfg.Vault.Enabled() {
		if cfg.DBCredentialsFile == "" {
			return nil, nil, errors.New(command + " needs Vault (ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE, or ORDER_VAULT_AUTH_METHOD=kubernetes; ORDER_VAULT_DB_ROLE=order-migrate) " +
				"or ORDER_DB_CREDENTIALS_FILE (credentials allowed to change the schema)")
		}
		return mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile}, func() {}, nil
	}
	v, err := newVaultLeases(cfg, logger)
	if err != nil {
		return nil, nil, err
	}
	release := v.run(ctx, logger)
	if err := v.src.WaitReady(ctx); err != nil {
		release()
		return nil, nil, err
	}
	return v.src, release, nil
}

// vaultLeases is the service's Vault login and the database credentials of cfg.Vault.DBRole made under it.
type vaultLeases struct {
	session *vaultauth.Session
	src     *dblease.Source
}

func newVaultLeases(cfg config, logger *slog.Logger) (vaultLeases, error) {
	session, err := vaultauth.New(cfg.Vault.Config, logger)
	if err != nil {
		return vaultLeases{}, err
	}
	src, err := dblease.New(session, cfg.Vault.DBRole, logger)
	if err != nil {
		return vaultLeases{}, err
	}
	return vaultLeases{session: session, src: src}, nil
}

// run logs in and keeps credentials until stop, which then gives the token back: the database users made under
// it are dropped (a DDL user at once, instead of at its lease's end).
func (v vaultLeases) run(ctx context.Context, logger *slog.Logger) (stop func()) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { v.session.Run(runCtx) })
	wg.Go(func() { v.src.Run(runCtx) })
	return func() {
		cancel()
		wg.Wait()
		if err := v.src.Revoke(context.WithoutCancel(ctx)); err != nil {
			logger.Warn("could not give the vault token back; its database users expire with their leases", "err", err)
		}
	}
}

func migrate(ctx context.Context, cfg config, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	db, closeDB, err := openDDL(ctx, cfg, "migrate", logger)
	if err != nil {
		return err
	}
	defer closeDB()
	applied, err := mysqlstore.Migrate(ctx, db)
	if err != nil {
		return err
	}
	logger.Info("schema up to date", "applied", applied)
	// The partitioned tables need their months before the first order: the same DDL user does it now.
	rep, err := mysqlstore.MaintainPartitions(ctx, db, time.Now(), partitionPolicy(cfg))
	if err != nil {
		return err
	}
	logger.Info("partitions maintained", "added", rep.Added, "dropped", rep.Dropped, "skipped", rep.Skipped)
	return nil
}

func partitionPolicy(cfg config) mysqlstore.PartitionPolicy {
	return mysqlstore.PartitionPolicy{Ahead: cfg.Partitions.Ahead, RetentionMonths: cfg.Partitions.RetentionMonths,
		IdempotencyRetention: cfg.Partitions.IdempotencyRetention}
}

// maintainPartitions adds and drops monthly partitions with DDL credentials (the runtime role has none), once
// or on a ticker. Several running at once is safe: one works, the others skip (a named lock).
func maintainPartitions(ctx context.Context, cfg config, logger *slog.Logger) error {
	db, closeDB, err := openDDL(ctx, cfg, "maintain-partitions", logger)
	if err != nil {
		return err
	}
	defer closeDB()
	if cfg.Partitions.Every > 0 {
		mysqlstore.RunPartitionMaintenance(ctx, db, partitionPolicy(cfg), cfg.Partitions.Every, logger)
		return nil
	}
	rep, err := mysqlstore.MaintainPartitions(ctx, db, time.Now(), partitionPolicy(cfg))
	if err != nil {
		return err
	}
	logger.Info("partitions maintained", "added", rep.Added, "dropped", rep.Dropped, "skipped", rep.Skipped,
		"purged_idempotency_keys", rep.PurgedKeys)
	return nil
}

// serve runs the order API until the process ends. Its background work (the event hub, the replica monitor,
// the Consul registration) runs in the process's errgroup and is joined before the pools close.
func serve(p *svcmain.Process, cfg config) (err error) {
	ctx, logger := p.Ctx, p.Logger
	b, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer b.close()
	// Every goroutine below uses the pools: they all end, and are joined, before b.close runs.
	g, ctx := errgroup.WithContext(ctx)
	ctx, stopWork := context.WithCancel(ctx)
	defer func() {
		stopWork()
		if werr := g.Wait(); err == nil {
			err = werr
		}
	}()

	svc := order.NewService(b.store, order.DefaultMenu)
	duration := kitprometheus.NewHistogramFrom(prometheus.HistogramOpts{
		Namespace: "pizza", Subsystem: "order", Name: "request_duration_seconds",
		Help: "Time spent in order endpoints, by method and outcome.",
	}, []string{"method", "outcome"})
	// The event streams go through the same middleware as every other endpoint.
	mw := []func(string) endpoint.Middleware{
		kitmw.Instrumenting(duration, httpapi.Outcome),
		kitmw.Logging(logger, httpapi.Outcome),
	}
	endpoints := order.MakeServerEndpoints(svc, mw...)
	hub := order.NewHub(b.store, 200*time.Millisecond, logger)
	g.Go(func() error { hub.Run(ctx); return nil })
	g.Go(func() error { b.store.MonitorReplica(ctx); return nil })

	health := httpserver.NewHealth(append(b.checks,
		httpserver.Check{Name: "database", Fn: b.db.PingContext},
		httpserver.Check{Name: "events", Fn: hub.Ready})...)
	mux := http.NewServeMux()
	health.Register(mux)
	mux.Handle("GET /metrics", promhttp.Handler())
	httpapi.MakeHTTPHandler(mux, endpoints)
	endStreams := httpapi.MakeSSEHandler(mux, order.MakeStreamEndpoint(hub, mw...))
	handler := reqid.Middleware(httpserver.AccessLog(logger, reqid.FromContext, mux))

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

// backend is the database pool and the store on it, with what readiness depends on.
type backend struct {
	db     *sql.DB
	store  *mysqlstore.Store
	checks []httpserver.Check
	// waitReady blocks until Vault credentials are at hand (nil without Vault).
	waitReady func(context.Context) error
	// close closes the pool, then gives the Vault token back (its database users are dropped).
	close func()
}

// openBackend opens the pool on Vault's dynamic credentials, with PII sealed by transit data keys, or on a
// credentials file without Vault (development: PII stored as given). The checks make readiness false while
// no unexpired credentials are at hand.
func openBackend(ctx context.Context, cfg config, logger *slog.Logger) (backend, error) {
	if !cfg.Vault.Enabled() {
		if cfg.DBCredentialsFile == "" {
			return backend{}, errors.New("no database credentials: set ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE " +
				"or ORDER_VAULT_AUTH_METHOD=kubernetes (Vault), or ORDER_DB_CREDENTIALS_FILE")
		}
		logger.Warn("database credentials from a file and PII unencrypted: no Vault, for development only")
		src := mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile}
		db, err := mysqlconn.Open(cfg.DB, src)
		if err != nil {
			return backend{}, err
		}
		replica, replicaDB, err := openReplica(cfg, src, logger)
		if err != nil {
			db.Close()
			return backend{}, err
		}
		return backend{db: db, store: mysqlstore.New(db, replica...), close: func() { replicaDB.Close(); db.Close() }}, nil
	}
	v, err := newVaultLeases(cfg, logger)
	if err != nil {
		return backend{}, err
	}
	src := v.src
	db, err := mysqlconn.Open(cfg.DB, src)
	if err != nil {
		return backend{}, err
	}
	replica, replicaDB, err := openReplica(cfg, src, logger)
	if err != nil {
		db.Close()
		return backend{}, err
	}
	// Connections must not outlive their lease: keep their lifetime below half of each new lease's TTL.
	src.OnNewLease = func(ttl time.Duration) {
		lifetime := max(min(cfg.DB.ConnMaxLifetime, ttl/2), time.Second)
		db.SetConnMaxLifetime(lifetime)
		replicaDB.SetConnMaxLifetime(lifetime)
	}
	stopVault := v.run(ctx, logger)
	keyring := envelope.New(envelope.VaultTransit{
		Client: v.session.Client(), Mount: cfg.PII.TransitMount, Key: cfg.PII.TransitKey, Timeout: cfg.Vault.Timeout,
		OnForbidden: func(error) { v.session.TokenRejected() },
	}, cfg.PII.KeyLifetime, logger)
	return backend{
		db:        db,
		store:     mysqlstore.New(db, append(replica, mysqlstore.WithPII(keyring), holdCommit(cfg.Test.HoldCommitFile, logger))...),
		checks:    []httpserver.Check{{Name: "credentials", Fn: src.Ready}},
		waitReady: src.WaitReady,
		close: func() {
			replicaDB.Close()
			db.Close()
			stopVault()
		},
	}, nil
}

// openReplica opens the read replica's pool on the same credentials as the primary's (Vault's users are made
// on the primary and replicate), with its metrics. Without a replica address it returns no option and an
// unused pool, so callers close it alike.
func openReplica(cfg config, src mysqlconn.CredentialSource, logger *slog.Logger) ([]mysqlstore.Option, *sql.DB, error) {
	rcfg := cfg.DB
	rcfg.Addr = cfg.DBReplica.Addr
	// A dead replica host must cost a read little: it falls back to the primary after this.
	rcfg.DialTimeout = min(rcfg.DialTimeout, cfg.DBReplica.Timeout)
	db, err := mysqlconn.Open(rcfg, mysqlconn.WithoutRefresh(src))
	if err != nil || cfg.DBReplica.Addr == "" {
		return nil, db, err
	}
	m := mysqlstore.ReplicaMetrics{
		Lag: kitprometheus.NewGaugeFrom(prometheus.GaugeOpts{
			Namespace: "pizza", Subsystem: "order", Name: "db_replica_lag_seconds",
			Help: "How far the database replica is behind the primary (heartbeat applied), as last measured.",
		}, nil),
		Usable: kitprometheus.NewGaugeFrom(prometheus.GaugeOpts{
			Namespace: "pizza", Subsystem: "order", Name: "db_replica_usable",
			Help: "1 while reads go to the database replica; 0 while they go to the primary (replica down, lagging or not replicating).",
		}, nil),
		Reads: kitprometheus.NewCounterFrom(prometheus.CounterOpts{
			Namespace: "pizza", Subsystem: "order", Name: "db_reads_total",
			Help: "Order reads by the pool that served them and why.",
		}, []string{"pool", "reason"}),
	}
	logger.Info("reads go to the database replica when it has caught up", "replica", cfg.DBReplica.Addr)
	return []mysqlstore.Option{mysqlstore.WithReplica(mysqlstore.NewReplica(db, cfg.DBReplica.ReplicaConfig, m, logger))}, db, nil
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
	id := cmp.Or(cfg.Service.ID, consulreg.DefaultID("order", port))
	return consulreg.Join(ctx, cfg.Consul.Addr, consulreg.Instance{
		ID: id, Name: "order", Address: host, Port: port, TokenFile: cfg.Consul.TokenFile, AdvertiseNode: cfg.Consul.AdvertiseNode,
		CheckURL: fmt.Sprintf("http://%s/health/readyz", net.JoinHostPort(host, strconv.Itoa(port))),
	}, logger)
}

// holdCommit is the test-only hook of cfg.Test.HoldCommitFile: no option at all when the file is not set.
func holdCommit(file string, logger *slog.Logger) mysqlstore.Option {
	if file == "" {
		return func(*mysqlstore.Store) {}
	}
	logger.Warn("TEST ONLY: new orders wait before COMMIT while the hold file exists", "file", file)
	return mysqlstore.WithBeforeCommitHook(func(ctx context.Context) {
		for {
			if _, err := os.Stat(file); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}
