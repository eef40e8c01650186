package orderdb

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

func TestMain(m *testing.M) { os.Exit(mysqltest.Run(m)) }

// Without Vault, Open and OpenDDL log in with the credentials file's user: no Vault, no credentials check, the
// store gets the caller's options, and closing closes the pool.
func TestOpenOnACredentialsFile(t *testing.T) {
	db := mysqltest.NewDatabase(t)
	user, pass := db.CreateUser(t, "SELECT")
	file := filepath.Join(t.TempDir(), "db-credentials")
	if err := os.WriteFile(file, []byte(user+":"+pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg Config
	cfg.DB = mysqlconn.Config{Addr: db.Addr, Name: db.Name, MaxOpen: 4, MaxIdle: 4, ConnMaxLifetime: time.Minute,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	cfg.DBReplica.Timeout = time.Second
	cfg.DBCredentialsFile = file
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	currentUser := func(pool *sql.DB) string {
		t.Helper()
		var u string
		if err := pool.QueryRowContext(ctx, "SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)").Scan(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}

	applied := false
	b, err := Open(ctx, cfg, logger, func(*mysqlstore.Store) { applied = true })
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case b.UsesVault() || len(b.Checks) != 0:
		t.Errorf("UsesVault %t, checks %v; want no Vault and no credentials check", b.UsesVault(), b.Checks)
	case b.WaitReady(ctx) != nil:
		t.Errorf("WaitReady: %v", b.WaitReady(ctx))
	case b.Store == nil || !applied:
		t.Errorf("store %v, caller's option applied %t", b.Store, applied)
	}
	if u := currentUser(b.DB); u != user {
		t.Errorf("serving pool logged in as %s; want the file's %s", u, user)
	}
	b.Close()
	if err := b.DB.PingContext(ctx); err == nil {
		t.Error("the pool is still open after Close")
	}

	ddl, closeDDL, err := OpenDDL(ctx, cfg, "migrate", logger)
	if err != nil {
		t.Fatal(err)
	}
	if u := currentUser(ddl); u != user {
		t.Errorf("DDL pool logged in as %s; want the file's %s", u, user)
	}
	closeDDL()
	if err := ddl.PingContext(ctx); err == nil {
		t.Error("the DDL pool is still open after closeDB")
	}
}
