package dblease

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/vaultauth"
)

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

// fixture is a dev Vault whose database engine makes MariaDB users of role "order" on a fresh database, and an
// AppRole "order" that may read them.
type fixture struct {
	v      *devserver.Vault
	db     *mysqltest.DB
	cfg    vaultauth.Config
	leases atomic.Int64 // new leases seen by OnNewLease
}

type ttls struct{ token, lease, leaseMax string }

func newFixture(t *testing.T, ttl ttls) *fixture {
	t.Helper()
	v := devserver.StartVault(t)
	db := mysqltest.NewDatabase(t)
	root := v.Root
	if err := root.Sys().Mount("database", &vault.MountInput{Type: "database"}); err != nil {
		t.Fatal(err)
	}
	admin, err := mysql.ParseDSN(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("database/config/pizza", map[string]any{
		"plugin_name":    "mysql-database-plugin",
		"connection_url": "{{username}}:{{password}}@tcp(" + admin.Addr + ")/",
		"username":       admin.User, "password": admin.Passwd,
		"allowed_roles": "order",
	}); err != nil {
		t.Fatal(err)
	}
	revocation, err := os.ReadFile("../../vault/database/revocation.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("database/roles/order", map[string]any{
		"db_name": "pizza",
		"creation_statements": fmt.Sprintf("CREATE USER '{{name}}'@'%%' IDENTIFIED BY '{{password}}';\n"+
			"GRANT SELECT ON `%s`.* TO '{{name}}'@'%%';", db.Name),
		"revocation_statements": string(revocation),
		"default_ttl":           ttl.lease, "max_ttl": ttl.leaseMax,
	}); err != nil {
		t.Fatal(err)
	}
	roleIDFile, secretIDFile := v.AppRole(t, "order", `path "database/creds/order" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }`, ttl.token)
	return &fixture{v: v, db: db, cfg: vaultauth.Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: vaultauth.MethodAppRole,
		RoleIDFile: roleIDFile, SecretIDFile: secretIDFile, Timeout: 5 * time.Second}}
}

// source returns a Source and its session, not running.
func (f *fixture) source(t *testing.T) (*Source, *vaultauth.Session) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	session, err := vaultauth.New(f.cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(session, "order", logger)
	if err != nil {
		t.Fatal(err)
	}
	src.OnNewLease = func(time.Duration) { f.leases.Add(1) }
	return src, session
}

// run runs src and session until the returned stop is called (or the test ends).
func run(t *testing.T, src *Source, session *vaultauth.Session) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { session.Run(ctx) })
	wg.Go(func() { src.Run(ctx) })
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

func (f *fixture) runReady(t *testing.T) (*Source, *vaultauth.Session, func()) {
	t.Helper()
	src, session := f.source(t)
	stop := run(t, src, session)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return src, session, stop
}

// pool opens a pool on src's credentials that keeps no connection, so every query logs in anew.
func (f *fixture) pool(t *testing.T, src mysqlconn.CredentialSource) *sql.DB {
	t.Helper()
	pool, err := mysqlconn.Open(mysqlconn.Config{Addr: f.db.Addr, Name: f.db.Name, MaxOpen: 4, MaxIdle: 4,
		ConnMaxLifetime: time.Minute, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}, src)
	if err != nil {
		t.Fatal(err)
	}
	pool.SetMaxIdleConns(0)
	t.Cleanup(func() { pool.Close() })
	return pool
}

// currentUser is the MySQL user a new connection of pool logs in as.
func currentUser(t *testing.T, pool *sql.DB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var user string
	if err := pool.QueryRowContext(ctx, "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&user); err != nil {
		t.Fatalf("query as the source's user: %v", err)
	}
	return user
}

// canLogIn says whether MariaDB lets creds log in.
func (f *fixture) canLogIn(t *testing.T, creds mysqlconn.Credentials) bool {
	t.Helper()
	db, err := sql.Open("mysql", f.db.DSNFor(creds.Username, creds.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = db.PingContext(ctx)
	var me *mysql.MySQLError
	if err != nil && !errors.As(err, &me) {
		t.Fatalf("ping: %v", err)
	}
	return err == nil
}

func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	testkit.EventuallyEvery(t, d, 50*time.Millisecond, what, func() error {
		if !ok() {
			return errors.New("not yet")
		}
		return nil
	})
}

func TestCredentialsOpenThePool(t *testing.T) {
	f := newFixture(t, ttls{token: "20m", lease: "2m", leaseMax: "10m"})
	src, session := f.source(t)
	if _, err := src.Credentials(context.Background()); err == nil {
		t.Error("credentials before Run; want none")
	}
	if err := src.Ready(context.Background()); err == nil {
		t.Error("ready before Run")
	}
	var ttl atomic.Int64
	src.OnNewLease = func(d time.Duration) { ttl.Store(int64(d)) }
	run(t, src, session)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(ttl.Load()); got != 2*time.Minute {
		t.Errorf("OnNewLease got TTL %s; want the role's 2m", got)
	}
	if user := currentUser(t, f.pool(t, src)); user != src.Username() || user == "" {
		t.Errorf("the pool logged in as %q; want the lease's user %q", user, src.Username())
	}
}

// Before the lease's max TTL, new credentials are fetched and new connections use them; readiness holds.
func TestNewCredentialsBeforeMaxTTL(t *testing.T) {
	f := newFixture(t, ttls{token: "20m", lease: "3s", leaseMax: "6s"})
	src, _, _ := f.runReady(t)
	first := src.Username()
	within(t, 20*time.Second, "new credentials before the max TTL", func() bool {
		if err := src.Ready(context.Background()); err != nil {
			t.Fatalf("not ready while rotating: %v", err)
		}
		return src.Username() != first
	})
	if user := currentUser(t, f.pool(t, src)); user != src.Username() {
		t.Errorf("the pool logged in as %q; want the new user %q", user, src.Username())
	}
}

// A burst of connections refused as the same user fetches one new user; a refusal of a user already replaced
// fetches none.
func TestRefreshFetchesOneUserPerRefusal(t *testing.T) {
	f := newFixture(t, ttls{token: "20m", lease: "2m", leaseMax: "10m"})
	src, _, _ := f.runReady(t)
	rejected, before := src.Username(), f.leases.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- src.Refresh(ctx, rejected) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
	}
	if src.Username() == rejected {
		t.Fatal("still the rejected user after Refresh")
	}
	if n := f.leases.Load() - before; n != 1 {
		t.Errorf("8 refusals of one user fetched %d new users; want 1", n)
	}
	if err := src.Refresh(ctx, rejected); err != nil {
		t.Fatal(err)
	}
	if n := f.leases.Load() - before; n != 1 {
		t.Errorf("a refusal of a replaced user fetched a new one (%d in all)", n)
	}
}

// Operators' revocations: the pool's next connection is refused, and it logs in with a new user at once.
func TestRevokedCredentialsAreReplacedOnRefusal(t *testing.T) {
	tests := []struct {
		name   string
		revoke func(t *testing.T, f *fixture, session *vaultauth.Session)
	}{
		{"lease revoked", func(t *testing.T, f *fixture, _ *vaultauth.Session) {
			if _, err := f.v.Root.Logical().Write("sys/leases/revoke-prefix/database/creds/order", nil); err != nil {
				t.Fatal(err)
			}
		}},
		// The leases die with the token; fetching new ones is refused until the session logs in again.
		{"token revoked", func(t *testing.T, f *fixture, session *vaultauth.Session) {
			if err := f.v.Root.Auth().Token().RevokeTree(session.Client().Token()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// TTLs long enough that no renewal notices the revocation first: the refusal must.
			f := newFixture(t, ttls{token: "20m", lease: "2m", leaseMax: "10m"})
			src, session, _ := f.runReady(t)
			pool := f.pool(t, src)
			old, _ := src.Credentials(context.Background())
			if user := currentUser(t, pool); user != old.Username {
				t.Fatalf("logged in as %q; want %q", user, old.Username)
			}
			tt.revoke(t, f, session)
			within(t, 10*time.Second, "the revoked user is dropped", func() bool { return !f.canLogIn(t, old) })
			if user := currentUser(t, pool); user == old.Username || user != src.Username() {
				t.Errorf("after the revocation the pool logged in as %q (revoked: %q, current: %q)", user, old.Username, src.Username())
			}
		})
	}
}

// Revoke gives the token back, and the users of its leases are dropped.
func TestRevokeDropsTheUsers(t *testing.T) {
	f := newFixture(t, ttls{token: "20m", lease: "2m", leaseMax: "10m"})
	src, _, stop := f.runReady(t)
	creds, _ := src.Credentials(context.Background())
	if !f.canLogIn(t, creds) {
		t.Fatal("the lease's user cannot log in")
	}
	stop()
	if err := src.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Vault revokes the token's leases in the background, right after the token.
	within(t, 10*time.Second, "the lease's user is dropped", func() bool { return !f.canLogIn(t, creds) })
}

// Nothing the source logs holds the password.
func TestLogsHoldNoPassword(t *testing.T) {
	f := newFixture(t, ttls{token: "20m", lease: "2m", leaseMax: "10m"})
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	session, err := vaultauth.New(f.cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(session, "order", logger)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, src, session)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := src.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	creds, _ := src.Credentials(ctx)
	secretID, _ := os.ReadFile(f.cfg.SecretIDFile)
	token := session.Client().Token()
	if err := src.Refresh(ctx, creds.Username); err != nil {
		t.Fatal(err)
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	out := logs.String()
	if !strings.Contains(out, creds.Username) {
		t.Fatalf("the logs do not name the user; the test would not see a password either:\n%s", out)
	}
	for name, secret := range map[string]string{"password": creds.Password, "secret_id": strings.TrimSpace(string(secretID)), "token": token} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs hold the %s", name)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
