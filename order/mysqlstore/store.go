// Package mysqlstore keeps orders in MariaDB 10.11 (what the tests run; MySQL 8 is untested since the
// replica's read-your-writes uses MariaDB's GTID functions). Every write is one transaction, so an error never
// leaves a partial order behind. Orders, items and events are partitioned by month (see package partitions).
//
// One job per file: write.go writes on the primary; read.go reads, where replica.go's Replica routes them;
// pii.go seals customer PII and rewraps its keys; events.go reads the event log; migrate.go migrates the
// schema. The monthly partitions are maintained by package partitions, on the schema owner's pool.
package mysqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/pizzajoint/mesh/order"
)

// Store is an order.Store on MySQL. Writes, idempotency look-ups and the event log use the primary (db);
// Get and List go to the replica when one is configured (see Replica).
type Store struct {
	db      *sql.DB
	replica *Replica
	pii     piiSealer
	// beforeCommit is a test-only hook (WithBeforeCommitHook): nil in service.
	beforeCommit func(context.Context)
}

var _ order.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithBeforeCommitHook runs hook inside Create's transaction, after its INSERTs and before COMMIT. Test-only:
// the fault tests use it to hold an order's transaction open and kill the process there (cmd/order enables it
// only when ORDER_TEST_HOLD_COMMIT_FILE is set).
func WithBeforeCommitHook(hook func(context.Context)) Option {
	return func(s *Store) { s.beforeCommit = hook }
}

// New returns a Store on db (the primary). The schema must be migrated (see Migrate). Its pools must allow
// multi-statement batches with client-side interpolation, as mysqlconn.Open's do: a write and a Get are
// each one batch.
func New(db *sql.DB, opts ...Option) *Store {
	s := &Store{db: db}
	for _, o := range opts {
		o(s)
	}
	return s
}

const orderColumns = `id, status, customer_name, customer_phone, customer_address, pii_key, tracking_token, total_cents, created_at, updated_at`

// createdRange is the creation time an order ID allows: a ULID starts with its creation time in ms, and the
// service stamps created_at in that same millisecond (rounded to the microsecond, so the end is inclusive).
// Adding it to a lookup by ID lets MySQL prune every partition but one.
func createdRange(id string) (from, to time.Time, ok bool) {
	u, err := ulid.ParseStrict(id)
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	from = time.UnixMilli(int64(u.Time())).UTC()
	return from, from.Add(time.Millisecond), true
}
