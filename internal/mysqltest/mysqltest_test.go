package mysqltest

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pizzajoint/mesh/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// MySQL error numbers the privilege checks expect.
const (
	errDBAccessDenied    = 1044 // no privilege on the database at all
	errTableAccessDenied = 1142 // command denied on a table
	errNoSuchTable       = 1146
)

func TestNewDatabase_roundTrip(t *testing.T) {
	t.Parallel()
	db := NewDatabase(t)
	pool := db.Open(t)
	ctx := context.Background()

	cfg, err := mysql.ParseDSN(db.DSN)
	if err != nil {
		t.Fatalf("DSN does not parse: %v", err)
	}
	if !cfg.ParseTime || cfg.MultiStatements || cfg.DBName != db.Name || cfg.Addr != db.Addr {
		t.Fatalf("DSN config = parseTime %v, multiStatements %v, db %q, addr %q; want true, false, %q, %q",
			cfg.ParseTime, cfg.MultiStatements, cfg.DBName, cfg.Addr, db.Name, db.Addr)
	}
	if os.Getenv(EnvDSN) == "" {
		if _, port, _ := net.SplitHostPort(db.Addr); port == "3306" {
			t.Fatalf("private server listens on %s, the system MariaDB's port", db.Addr)
		}
	}

	mustExec(t, pool, "CREATE TABLE pizzas (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, created DATETIME(6) NOT NULL)")
	created := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	// The emoji needs utf8mb4, which MariaDB does not default to.
	mustExec(t, pool, "INSERT INTO pizzas VALUES (1, ?, ?)", "Margherita 🍕", created)

	var name string
	var got time.Time
	if err := pool.QueryRowContext(ctx, "SELECT name, created FROM pizzas WHERE id = 1").Scan(&name, &got); err != nil {
		t.Fatalf("select: %v", err)
	}
	if name != "Margherita 🍕" || !got.Equal(created) {
		t.Fatalf("row = %q, %v; want %q, %v", name, got, "Margherita 🍕", created)
	}
}

func TestNewDatabase_freshAndIsolated(t *testing.T) {
	t.Parallel()
	a, b := NewDatabase(t), NewDatabase(t)
	if a.Name == b.Name {
		t.Fatalf("two databases share the name %q", a.Name)
	}
	poolA, poolB := a.Open(t), b.Open(t)
	for _, db := range []*DB{a, b} {
		if n := tableCount(t, poolA, db.Name); n != 0 {
			t.Fatalf("fresh database %s has %d tables, want 0", db.Name, n)
		}
	}

	mustExec(t, poolA, "CREATE TABLE only_in_a (id INT)")
	mustExec(t, poolA, "INSERT INTO only_in_a VALUES (1)")
	if n := tableCount(t, poolA, b.Name); n != 0 {
		t.Fatalf("database %s sees %d tables after a table was made in %s, want 0", b.Name, n, a.Name)
	}
	_, err := poolB.ExecContext(context.Background(), "SELECT * FROM only_in_a")
	wantMySQLError(t, err, errNoSuchTable)
}

func TestNewDatabase_cleanupDropsDatabaseAndUsers(t *testing.T) {
	var dbName, user string
	t.Run("make", func(t *testing.T) {
		db := NewDatabase(t)
		dbName = db.Name
		user, _ = db.CreateUser(t, "SELECT")
	})

	admin := NewDatabase(t).Open(t)
	ctx := context.Background()
	var n int
	if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", dbName).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", dbName)
	}
	if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE User = ?", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("user %s still exists after its test ended", user)
	}
}

func TestCreateUser_leastPrivilege(t *testing.T) {
	t.Parallel()
	db := NewDatabase(t)
	other := NewDatabase(t)
	mustExec(t, db.Open(t), "CREATE TABLE orders (id INT PRIMARY KEY)")
	mustExec(t, other.Open(t), "CREATE TABLE secrets (id INT)")

	type step struct {
		stmt    string
		wantErr uint16 // 0: must succeed
	}
	tests := []struct {
		name   string
		grants string
		steps  []step
	}{
		{
			name:   "runtime role reads and writes but cannot change schema or delete",
			grants: "SELECT, INSERT, UPDATE",
			steps: []step{
				{"INSERT INTO orders VALUES (1)", 0},
				{"UPDATE orders SET id = 2 WHERE id = 1", 0},
				{"SELECT COUNT(*) FROM orders", 0},
				{"DELETE FROM orders", errTableAccessDenied},
				{"CREATE TABLE evil (id INT)", errTableAccessDenied},
				{"DROP TABLE orders", errTableAccessDenied},
				{"SELECT * FROM " + quoteIdent(other.Name) + ".secrets", errTableAccessDenied},
			},
		},
		{
			name:   "read-only role cannot write",
			grants: "SELECT",
			steps: []step{
				{"SELECT COUNT(*) FROM orders", 0},
				{"INSERT INTO orders VALUES (3)", errTableAccessDenied},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, password := db.CreateUser(t, tt.grants)
			pool := openAs(t, db.DSNFor(user, password))
			for _, s := range tt.steps {
				_, err := pool.ExecContext(context.Background(), s.stmt)
				if s.wantErr == 0 {
					if err != nil {
						t.Fatalf("%s: %v", s.stmt, err)
					}
					continue
				}
				wantMySQLError(t, err, s.wantErr)
			}
		})
	}

	t.Run("no grants cannot even select the database", func(t *testing.T) {
		user, password := db.CreateUser(t, "")
		pool := openAs(t, db.DSNFor(user, password))
		err := pool.PingContext(context.Background())
		wantMySQLError(t, err, errDBAccessDenied)
	})
}

func TestCheckGrants(t *testing.T) {
	tests := []struct {
		grants string
		ok     bool
	}{
		{"", true},
		{"SELECT", true},
		{"SELECT, INSERT, UPDATE", true},
		{"SELECT (id, name), UPDATE (name)", true},
		{"ALL PRIVILEGES", true},
		{"SELECT ON *.*", false},
		{"SELECT; DROP DATABASE mysql", false},
		{"SELECT, INSERT TO 'x'", false},
		{"SELECT `x`", false},
	}
	for _, tt := range tests {
		t.Run(tt.grants, func(t *testing.T) {
			if err := checkGrants(tt.grants); (err == nil) != tt.ok {
				t.Fatalf("checkGrants(%q) = %v, want ok=%v", tt.grants, err, tt.ok)
			}
		})
	}
}

func mustExec(t *testing.T, db *sql.DB, stmt string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func tableCount(t *testing.T, db *sql.DB, schema string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(),
		"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func openAs(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	pool, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

func wantMySQLError(t *testing.T, err error, number uint16) {
	t.Helper()
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != number {
		t.Fatalf("err = %v, want MySQL error %d", err, number)
	}
}

func TestStartMariadbd_failureShowsLogTail(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		wantRetry bool
		wantInErr string
	}{
		{
			name:      "port taken is retried",
			script:    "echo '[ERROR] Bind on TCP/IP port. Got error: 98: Address already in use' >&2; exit 1",
			wantRetry: true,
			wantInErr: "Address already in use",
		},
		{
			name:      "other failure is reported",
			script:    "echo '[ERROR] unknown variable bogus' >&2; exit 1",
			wantInErr: "unknown variable bogus",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake := filepath.Join(dir, "fake-mariadb.sh") // a launcher whose server fails at once
			if err := os.WriteFile(fake, []byte("#!/bin/sh\n"+tt.script+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			port, err := testkit.Port()
			if err != nil {
				t.Fatal(err)
			}
			srv, err, retry := startMariadbd(dir, fake, port)
			if srv != nil || err == nil {
				t.Fatalf("startMariadbd succeeded with a failing server")
			}
			if retry != tt.wantRetry || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Fatalf("retry = %v, err = %v; want retry %v and the log line %q", retry, err, tt.wantRetry, tt.wantInErr)
			}
		})
	}
}
