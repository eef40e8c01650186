// Package mysqltest gives integration tests a real, private MariaDB: one mariadbd per test binary, started
// lazily on its own data directory and free port, and a fresh, empty database per test. The server is
// initialised and started by scripts/mariadb.sh (init, run), the launcher the local stack supervises, so the
// tests run MariaDB with the stack's options.
//
// Use it from TestMain so the server is stopped and its files removed when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }
//
//	func TestStore(t *testing.T) {
//		db := mysqltest.NewDatabase(t)       // dropped when the test ends
//		pool := db.Open(t)                   // root on db.Name, parseTime=true
//		user, pass := db.CreateUser(t, "SELECT, INSERT, UPDATE")
//		runtime := db.DSNFor(user, pass)     // least-privilege DSN on the same database
//		...
//	}
//
// Set PIZZA_TEST_MYSQL_DSN to a root DSN of an existing MySQL 8 or MariaDB server (for example
// "root:secret@tcp(127.0.0.1:3306)/") to run against it instead; databases and users are still created per
// test and dropped afterwards, and no server is started.
//
// When mariadbd is not installed the tests fail (never skip): `make test` installs mariadb-server first.
package mysqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// EnvDSN names the environment variable holding a root DSN of an existing server to use instead of a
// private mariadbd.
const EnvDSN = "PIZZA_TEST_MYSQL_DSN"

// cleanupTimeout bounds each DROP run from t.Cleanup, so a stuck lock fails the test instead of hanging it.
const cleanupTimeout = 30 * time.Second

var (
	running   atomic.Bool // set by Run; NewDatabase refuses without it, since nothing else would stop the server
	startOnce sync.Once
	shared    *server
	startErr  error
)

// server is the MySQL server the tests share: a private mariadbd or the one named by EnvDSN.
type server struct {
	admin    *sql.DB       // root pool without a default database, for CREATE/DROP DATABASE and users
	adminCfg *mysql.Config // root config; DSNs for databases are derived from a clone
	stop     func()        // nil for a server this package did not start

	// Set for a private server only: what NewReplica needs to start a second mariadbd beside it.
	dir, launcher string
}

// Run runs the tests of m and then stops the private mariadbd (if one was started) and removes its files. It
// returns m.Run's exit code; call it from TestMain as os.Exit(mysqltest.Run(m)).
func Run(m *testing.M) int {
	running.Store(true)
	code := m.Run()
	running.Store(false)
	stopReplica()
	if shared != nil {
		_ = shared.admin.Close()
		if shared.stop != nil {
			shared.stop()
		}
	}
	return code
}

// sharedServer starts (once per test binary) or connects to the server.
func sharedServer() (*server, error) {
	startOnce.Do(func() {
		if dsn, ok := os.LookupEnv(EnvDSN); ok && dsn != "" {
			shared, startErr = connectExisting(dsn)
			return
		}
		shared, startErr = startPrivate()
	})
	return shared, startErr
}

// connectExisting uses the server named by EnvDSN. Errors name the address and user but never the DSN,
// which holds a password.
func connectExisting(dsn string) (*server, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid DSN: %w", EnvDSN, err)
	}
	cfg.DBName = ""
	cfg.ParseTime = true
	cfg.MultiStatements = false
	admin, err := openPool(cfg, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: connect to %s as %q: %w", EnvDSN, cfg.Addr, cfg.User, err)
	}
	return &server{admin: admin, adminCfg: cfg}, nil
}

// openPool opens a pool and pings it until it answers or the timeout passes.
func openPool(cfg *mysql.Config, timeout time.Duration) (*sql.DB, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// DB is a fresh, empty database on the shared server, dropped when the test that made it ends.
type DB struct {
	Name string // database name, random per test
	Addr string // server address, host:port (or the socket path when EnvDSN uses a unix socket)
	Net  string // "tcp" or "unix"
	DSN  string // root DSN with Name selected, parseTime=true, multiStatements off

	srv *server
}

// NewDatabase creates an empty database with a random name on the shared server (starting the server on first
// use) and drops it in tb.Cleanup. It fails the test when no server can be had; it never skips.
func NewDatabase(tb testing.TB) *DB {
	tb.Helper()
	if !running.Load() {
		tb.Fatalf("mysqltest: the package's TestMain must call mysqltest.Run(m), which stops the server when the tests end:\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }")
	}
	srv, err := sharedServer()
	if err != nil {
		tb.Fatalf("mysqltest: %v", err)
	}

	name := databaseName(tb.Name())
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := srv.admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)+
		" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		tb.Fatalf("mysqltest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := srv.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)); err != nil {
			tb.Errorf("mysqltest: drop database %s: %v", name, err)
		}
	})

	cfg := srv.adminCfg.Clone()
	cfg.DBName = name
	return &DB{Name: name, Addr: cfg.Addr, Net: cfg.Net, DSN: cfg.FormatDSN(), srv: srv}
}

// Open returns a root pool on the database, closed in tb.Cleanup (before the database is dropped).
func (d *DB) Open(tb testing.TB) *sql.DB {
	tb.Helper()
	pool, err := sql.Open("mysql", d.DSN)
	if err != nil {
		tb.Fatalf("mysqltest: open %s: %v", d.Name, err)
	}
	tb.Cleanup(func() { _ = pool.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		tb.Fatalf("mysqltest: ping %s: %v", d.Name, err)
	}
	return pool
}

// DSNFor returns a DSN for user on this database, with the same address and options as d.DSN.
func (d *DB) DSNFor(user, password string) string {
	cfg := d.srv.adminCfg.Clone()
	cfg.User = user
	cfg.Passwd = password
	cfg.DBName = d.Name
	return cfg.FormatDSN()
}

// CreateUser creates a user with a random name and password that may connect from any host and holds grants
// (privileges only, e.g. "SELECT, INSERT, UPDATE"; "" for none) on this database and nothing else, so tests can
// check least privilege. The user is dropped in tb.Cleanup; users are server-wide, unlike databases.
func (d *DB) CreateUser(tb testing.TB, grants string) (user, password string) {
	tb.Helper()
	if err := checkGrants(grants); err != nil {
		tb.Fatalf("mysqltest: CreateUser: %v", err)
	}
	user = "u_" + randomHex(10)
	password = randomHex(16)
	// Hex names and passwords need no escaping; CREATE USER and GRANT take no placeholders.
	account := "'" + user + "'@'%'"
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := d.srv.admin.ExecContext(ctx, "CREATE USER "+account+" IDENTIFIED BY '"+password+"'"); err != nil {
		tb.Fatalf("mysqltest: create user: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := d.srv.admin.ExecContext(ctx, "DROP USER IF EXISTS "+account); err != nil {
			tb.Errorf("mysqltest: drop user %s: %v", user, err)
		}
	})
	if grants != "" {
		if _, err := d.srv.admin.ExecContext(ctx, "GRANT "+grants+" ON "+quoteIdent(d.Name)+".* TO "+account); err != nil {
			tb.Fatalf("mysqltest: grant %s to %s: %v", grants, user, err)
		}
	}
	return user, password
}

// checkGrants accepts a privilege list such as "SELECT, INSERT" or "SELECT (id, name)". It rejects anything that
// could widen the statement (quotes, ';', an ON clause): the grant's scope is always this database.
func checkGrants(grants string) error {
	for _, r := range grants {
		ok := r == ' ' || r == ',' || r == '_' || r == '(' || r == ')' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("grants %q: only privilege names, commas and column lists are allowed", grants)
		}
	}
	for _, word := range strings.FieldsFunc(grants, func(r rune) bool { return r == ' ' || r == ',' }) {
		if strings.EqualFold(word, "ON") || strings.EqualFold(word, "TO") {
			return fmt.Errorf("grants %q: give privileges only; they always apply to the test's database", grants)
		}
	}
	return nil
}

// databaseName makes a unique name that still says which test made it, for reading server logs.
func databaseName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		if b.Len() == 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return "t_" + b.String() + "_" + randomHex(6)
}

func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
