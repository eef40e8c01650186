// Package storetest gives a test the order store on a fresh database of a real MariaDB (internal/mysqltest),
// migrated and partitioned as `order migrate` leaves it, opened as the order service opens it (mysqlconn) with
// the runtime role's grants.
package storetest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/order/mysqlstore/partitions"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

// Grants are the order service's runtime privileges (vault/database/order-creation.sql) and the migration
// role's (vault/database/order-migrate-creation.sql).
const (
	RuntimeGrants   = "SELECT, INSERT, UPDATE"
	MigrationGrants = "CREATE, ALTER, INDEX, DROP, REFERENCES, SELECT, INSERT, UPDATE, DELETE"
)

// Fixture is a migrated database with the store and the service on it.
type Fixture struct {
	DB      *mysqltest.DB
	Store   *mysqlstore.Store
	Service order.Service
	// Root is a pool with every privilege, for the test's own checks.
	Root *sql.DB
}

// New returns a Fixture on a fresh database.
func New(t testing.TB, opts ...mysqlstore.Option) Fixture {
	t.Helper()
	db := mysqltest.NewDatabase(t)
	ctx := context.Background()
	mu, mp := db.CreateUser(t, MigrationGrants)
	mig := Open(t, db, mu, mp)
	if _, err := mysqlstore.Migrate(ctx, mig); err != nil {
		t.Fatalf("storetest: migrate: %v", err)
	}
	if _, err := partitions.Maintain(ctx, mig, time.Now(), partitions.DefaultPolicy); err != nil {
		t.Fatalf("storetest: partitions: %v", err)
	}
	ru, rp := db.CreateUser(t, RuntimeGrants)
	store := mysqlstore.New(Open(t, db, ru, rp), opts...)
	return Fixture{DB: db, Store: store, Service: order.NewService(store, order.DefaultMenu), Root: db.Open(t)}
}

// Open opens a pool on db as the order service does, closed at the test's end.
func Open(t testing.TB, db *mysqltest.DB, user, pass string) *sql.DB {
	t.Helper()
	pool, err := mysqlconn.Open(mysqlconn.Config{
		Addr: db.Addr, Name: db.Name, MaxOpen: 64, MaxIdle: 64, ConnMaxLifetime: time.Minute,
		DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	}, mysqlconn.Static{Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}
