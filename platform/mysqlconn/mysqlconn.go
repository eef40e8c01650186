// Package mysqlconn opens a MySQL pool whose credentials can change while it runs: every new connection asks
// a CredentialSource for the current user, so rotated credentials take effect without a restart, and
// ConnMaxLifetime retires connections opened with older ones.
package mysqlconn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Credentials are a MySQL user and password.
type Credentials struct {
	Username string
	Password string
}

// LogValue keeps the password out of logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", c.Username), slog.String("password", "[redacted]"))
}

// CredentialSource gives the credentials a new connection should use. It is called once per new connection,
// so it must be cheap (return what it holds, never call out on each use).
type CredentialSource interface {
	Credentials(ctx context.Context) (Credentials, error)
}

// Config says where the database is and how the pool behaves.
type Config struct {
	Addr string `conf:"default:127.0.0.1:13306"`
	// AddrFile, when set, holds the address instead of Addr and is read again by every new connection: an
	// operator's promotion of a replica rewrites it, and the pool follows without a restart (its connections to
	// the lost server fail and are replaced).
	AddrFile string `conf:"help:file holding host:port of the database that every new connection reads (overrides Addr)"`
	Name     string `conf:"default:pizza"`
	// MaxOpen bounds connections; MySQL's own max_connections is shared by every instance.
	MaxOpen int `conf:"default:32"`
	MaxIdle int `conf:"default:32"`
	// ConnMaxLifetime must stay below the credentials' lease TTL, so no connection outlives its user.
	ConnMaxLifetime time.Duration `conf:"default:5m"`
	ConnMaxIdleTime time.Duration `conf:"default:1m"`
	DialTimeout     time.Duration `conf:"default:3s"`
	// ReadTimeout and WriteTimeout bound a single packet exchange, a backstop behind request deadlines.
	ReadTimeout  time.Duration `conf:"default:10s"`
	WriteTimeout time.Duration `conf:"default:10s"`
}

// Open returns a pool on cfg whose connections log in with src's current credentials.
func Open(cfg Config, src CredentialSource) (*sql.DB, error) {
	mc := mysql.NewConfig()
	mc.Net = "tcp"
	mc.Addr = cfg.Addr
	mc.DBName = cfg.Name
	mc.ParseTime = true
	mc.Loc = time.UTC
	mc.Timeout = cfg.DialTimeout
	mc.ReadTimeout = cfg.ReadTimeout
	mc.WriteTimeout = cfg.WriteTimeout
	// Client-side interpolation saves a prepare round trip per statement; safe with utf8mb4. Multi-statement
	// batches save more (mysqlstore sends an order's INSERTs in one); every value still goes through a
	// placeholder, escaped by the driver, never into the SQL text.
	mc.InterpolateParams = true
	mc.MultiStatements = true
	if err := mc.Apply(mysql.BeforeConnect(func(ctx context.Context, c *mysql.Config) error {
		cred, err := src.Credentials(ctx)
		if err != nil {
			return fmt.Errorf("database credentials: %w", err)
		}
		c.User, c.Passwd = cred.Username, cred.Password
		if cfg.AddrFile != "" {
			if c.Addr, err = ReadAddrFile(cfg.AddrFile); err != nil {
				return err
			}
		}
		if used, ok := ctx.Value(attemptKey{}).(*string); ok {
			*used = cred.Username
		}
		return nil
	})); err != nil {
		return nil, err
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(refreshingConnector{Connector: conn, src: src})
	db.SetMaxOpenConns(cfg.MaxOpen)
	db.SetMaxIdleConns(cfg.MaxIdle)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	db.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
	return db, nil
}

// ReadAddrFile reads a host:port from path (one line, as an operator's tooling writes it).
func ReadAddrFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("database address: %w", err)
	}
	addr := strings.TrimSpace(string(b))
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("database address in %s: %w", path, err)
	}
	return addr, nil
}

// Refresher is a CredentialSource that can fetch new credentials on demand. rejected names the user the
// database refused; if the source has moved past it already, Refresh returns at once.
type Refresher interface {
	Refresh(ctx context.Context, rejected string) error
}

// attemptKey carries, through BeforeConnect, which user a connection attempt logged in as.
type attemptKey struct{}

// MySQL's "Access denied for user" errors: the user was dropped, e.g. its lease was revoked. MariaDB answers
// some logins of a dropped user with 1698 rather than 1045.
const (
	errAccessDenied         = 1045
	errAccessDeniedNoPasswd = 1698
)

// refreshingConnector retries a refused login once with fresh credentials when the source can fetch them.
// A revoked user's open connections keep working (DROP USER does not end sessions), so this is the moment a
// revocation shows: the next new connection.
type refreshingConnector struct {
	driver.Connector
	src CredentialSource
}

func (c refreshingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	var used string
	conn, err := c.Connector.Connect(context.WithValue(ctx, attemptKey{}, &used))
	var me *mysql.MySQLError
	r, ok := c.src.(Refresher)
	if err == nil || !ok || !errors.As(err, &me) || (me.Number != errAccessDenied && me.Number != errAccessDeniedNoPasswd) {
		return conn, err
	}
	if rerr := r.Refresh(ctx, used); rerr != nil {
		return nil, fmt.Errorf("%w (and new credentials could not be had: %v)", err, rerr)
	}
	return c.Connector.Connect(ctx)
}

// FileCredentials reads "username:password" from a file (mode 0600, written by the operator's tooling) each
// time a connection opens, so replacing the file rotates the credentials.
type FileCredentials struct {
	Path string
}

// Credentials reads the file.
func (f FileCredentials) Credentials(context.Context) (Credentials, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return Credentials{}, err
	}
	user, pass, ok := strings.Cut(strings.TrimRight(string(b), "\r\n"), ":")
	if !ok || user == "" {
		return Credentials{}, errors.New("credentials file must hold username:password")
	}
	return Credentials{Username: user, Password: pass}, nil
}

// Static is a fixed set of credentials (tests).
type Static Credentials

// Credentials returns the fixed credentials.
func (s Static) Credentials(context.Context) (Credentials, error) { return Credentials(s), nil }

// WithoutRefresh hides src's Refresher, for a pool on a replica: a login the replica refuses may be a user
// that has not replicated yet (lag), not a revoked one, and must not make the source fetch new credentials.
// The primary's pool notices revocations.
func WithoutRefresh(src CredentialSource) CredentialSource { return noRefresh{src} }

type noRefresh struct{ CredentialSource }

// LeaseLifetime is the ConnMaxLifetime for a pool whose credentials are leased for ttl: at most half the
// lease, so no connection outlives its user (a new lease is fetched well before the old one ends), never more
// than configured, and at least a second, so a very short lease does not close connections as they open.
func LeaseLifetime(configured, ttl time.Duration) time.Duration {
	return max(min(configured, ttl/2), time.Second)
}

// KeepUnderLease returns a callback for each new lease's TTL (dblease.Source.OnNewLease) that sets the
// pools' ConnMaxLifetime to LeaseLifetime(configured, ttl).
func KeepUnderLease(configured time.Duration, pools ...*sql.DB) func(ttl time.Duration) {
	return func(ttl time.Duration) {
		lifetime := LeaseLifetime(configured, ttl)
		for _, db := range pools {
			db.SetConnMaxLifetime(lifetime)
		}
	}
}
