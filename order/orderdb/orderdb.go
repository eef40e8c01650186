// Package orderdb opens the order service's database: the primary's and the replica's pools on one source of
// credentials (Vault's dynamic users, or a credentials file without Vault), and the store on them. It is the
// one place that chooses between the two, so serving, the one-shot commands and their errors agree.
package orderdb

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/platform/dblease"
	"github.com/pizzajoint/mesh/platform/envelope"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/vaultauth"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is where the database is and whose credentials the pools use. The order command embeds it, so its
// settings are ORDER_DB_*, ORDER_DB_REPLICA_*, ORDER_DB_CREDENTIALS_FILE, ORDER_VAULT_* and ORDER_PII_*.
type Config struct {
	DB mysqlconn.Config
	// DBReplica: reads (get one order, list) go to this replica when Addr is set; see mysqlstore.Replica.
	DBReplica struct {
		Addr string `conf:"help:address of a read replica of the database, host:port (empty: all reads on the primary)"`
		mysqlstore.ReplicaConfig
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
	// PII: customer phone and address are sealed with data keys from Vault transit (when Vault is used).
	PII struct {
		TransitMount string `conf:"default:transit"`
		TransitKey   string `conf:"default:orders-pii"`
		// KeyLifetime is how long one data key seals new orders before the next is asked for.
		KeyLifetime time.Duration `conf:"default:10m"`
	}
}

// credentials is where a pool's credentials come from.
type credentials int

const (
	fromVault credentials = iota + 1
	fromFile
)

// vaultSettings and fileSetting name what an operator sets for each source, in the errors below.
const (
	vaultSettings = "ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE, or ORDER_VAULT_AUTH_METHOD=kubernetes"
	fileSetting   = "ORDER_DB_CREDENTIALS_FILE"
)

// choose says where the credentials come from: Vault whenever a login is configured (a credentials file is
// then ignored), else the file. Neither is an error naming both, for what.
func choose(cfg Config, what string) (credentials, error) {
	switch {
	case cfg.Vault.Enabled():
		return fromVault, nil
	case cfg.DBCredentialsFile != "":
		return fromFile, nil
	}
	return 0, errors.New(what + ": set " + vaultSettings + " (Vault), or " + fileSetting)
}

// Backend is the primary's pool and the store on it, with what readiness depends on.
type Backend struct {
	DB    *sql.DB
	Store *mysqlstore.Store
	// Checks make readiness false while no unexpired credentials are at hand (none without Vault).
	Checks []httpserver.Check
	leases *dblease.Source // nil without Vault
	close  func()
}

// Open opens the pools on Vault's dynamic credentials, with PII sealed by transit data keys, or on a
// credentials file without Vault (development: PII stored as given), and the store on them with opts.
// Vault's login and leases run until Close.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, opts ...mysqlstore.Option) (*Backend, error) {
	from, err := choose(cfg, "no database credentials")
	if err != nil {
		return nil, err
	}
	var (
		src    mysqlconn.CredentialSource = mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile}
		leases *dblease.Source
	)
	if from == fromVault {
		if leases, err = dblease.Login(cfg.Vault.Config, cfg.Vault.DBRole, logger); err != nil {
			return nil, err
		}
		src = leases
	} else {
		logger.Warn("database credentials from a file and PII unencrypted: no Vault, for development only")
	}
	db, err := mysqlconn.Open(cfg.DB, src)
	if err != nil {
		return nil, err
	}
	replica, replicaDB, err := openReplica(cfg, src, logger)
	if err != nil {
		db.Close()
		return nil, err
	}
	b := &Backend{DB: db, close: func() { replicaDB.Close(); db.Close() }}
	if leases != nil {
		// Connections must not outlive their lease.
		leases.OnNewLease = mysqlconn.KeepUnderLease(cfg.DB.ConnMaxLifetime, db, replicaDB)
		stopLeases := leases.Start(ctx)
		session := leases.Session()
		keyring := envelope.New(envelope.VaultTransit{
			Client: session.Client(), Mount: cfg.PII.TransitMount, Key: cfg.PII.TransitKey, Timeout: cfg.Vault.Timeout,
			OnForbidden: func(error) { session.TokenRejected() },
		}, cfg.PII.KeyLifetime, logger)
		replica = append(replica, mysqlstore.WithPII(keyring))
		b.leases, b.Checks = leases, []httpserver.Check{{Name: "credentials", Fn: leases.Ready}}
		// The pools close first, then the token is given back (its database users are dropped).
		b.close = func() { replicaDB.Close(); db.Close(); stopLeases() }
	}
	b.Store = mysqlstore.New(db, append(replica, opts...)...)
	return b, nil
}

// UsesVault reports whether the credentials (and the PII keys) come from Vault.
func (b *Backend) UsesVault() bool { return b.leases != nil }

// WaitReady blocks until credentials are at hand (at once without Vault).
func (b *Backend) WaitReady(ctx context.Context) error {
	if b.leases == nil {
		return nil
	}
	return b.leases.WaitReady(ctx)
}

// Close closes the pools, then gives the Vault token back.
func (b *Backend) Close() { b.close() }

// OpenDDL opens a pool on the schema owner's credentials for command (migrate, maintain-partitions): a
// short-lived user of cfg.Vault.DBRole (order-migrate; renewed while the command runs, dropped when closeDB gives
// the token back), or the credentials file.
func OpenDDL(ctx context.Context, cfg Config, command string, logger *slog.Logger) (db *sql.DB, closeDB func(), err error) {
	from, err := choose(cfg, command+" needs credentials allowed to change the schema (ORDER_VAULT_DB_ROLE=order-migrate)")
	if err != nil {
		return nil, nil, err
	}
	var (
		src     mysqlconn.CredentialSource = mysqlconn.FileCredentials{Path: cfg.DBCredentialsFile}
		release                            = func() {}
	)
	if from == fromVault {
		leases, err := dblease.Login(cfg.Vault.Config, cfg.Vault.DBRole, logger)
		if err != nil {
			return nil, nil, err
		}
		release = leases.Start(ctx)
		if err := leases.WaitReady(ctx); err != nil {
			release()
			return nil, nil, err
		}
		src = leases
	}
	db, err = mysqlconn.Open(cfg.DB, src)
	if err != nil {
		release()
		return nil, nil, err
	}
	return db, func() { db.Close(); release() }, nil
}

// replicaConfig is the replica pool's config: the primary's, at the replica's address, and dialling no longer
// than a replica query may take, since a dead replica host must cost a read little (it falls back to the
// primary).
func replicaConfig(cfg Config) mysqlconn.Config {
	rcfg := cfg.DB
	rcfg.Addr, rcfg.AddrFile = cfg.DBReplica.Addr, "" // the primary's address file is not the replica's
	rcfg.DialTimeout = min(rcfg.DialTimeout, cfg.DBReplica.Timeout)
	return rcfg
}

// openReplica opens the read replica's pool on the same credentials as the primary's (Vault's users are made
// on the primary and replicate), with its metrics. Without a replica address it returns no option and an
// unused pool, so callers close it alike.
func openReplica(cfg Config, src mysqlconn.CredentialSource, logger *slog.Logger) ([]mysqlstore.Option, *sql.DB, error) {
	db, err := mysqlconn.Open(replicaConfig(cfg), mysqlconn.WithoutRefresh(src))
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
