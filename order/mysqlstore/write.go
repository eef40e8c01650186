package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"github.com/pizzajoint/mesh/platform/tracing"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pizzajoint/mesh/order"
)

// MaxTransaction bounds every write transaction: past it the transaction is cancelled, and the driver closes
// its connection so MariaDB rolls it back: no row lock outlives it. A write normally takes milliseconds; the
// gateway gives up on a call after 5 s, so nothing waits for a longer transaction anyway.
const MaxTransaction = 5 * time.Second

// Create stores the idempotency key, the order, its items and its CREATED event in one transaction and one
// round trip: BEGIN, the INSERTs and COMMIT go as one multi-statement batch (see execBatch). The key goes
// first, so a taken key stops the batch before anything else is written.
func (s *Store) Create(ctx context.Context, o order.Order, idem order.Idempotency) error {
	// Sealed before the transaction: no outside call while rows are locked.
	sealed, key, err := s.pii.seal(ctx, o)
	if err != nil {
		return err
	}
	q, args := createBatch(o, sealed, key, idem)
	if s.beforeCommit != nil {
		q = strings.TrimSuffix(q, "; COMMIT") // test-only: COMMIT goes on its own, after the hook
	}
	// One span for the one round trip (and its deadlock retries); no values of the order, only their count.
	ctx, span := tracing.Span(ctx, "store create order", semconv.DBSystemNameMariaDB,
		semconv.DBOperationName("BEGIN; INSERT …; COMMIT"), attribute.Int("pizza.items", len(o.Items)),
		attribute.String("pizza.order_id", o.ID))
	attempts := 0
	for range maxAttempts {
		attempts++
		if err = s.execBatch(ctx, q, args, s.beforeCommit); !isDeadlock(err) {
			break
		}
	}
	span.SetAttributes(attribute.Int("pizza.attempts", attempts))
	tracing.End(span, err)
	if isDuplicate(err, "idempotency_keys_key") {
		return order.ErrIdempotencyKeyTaken
	}
	if err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// createBatch is the order's transaction as one multi-statement text: BEGIN; the INSERTs; COMMIT.
func createBatch(o order.Order, sealed []string, key any, idem order.Idempotency) (string, []any) {
	q := strings.Builder{}
	args := make([]any, 0, 15+7*len(o.Items)+4)
	q.WriteString(`BEGIN;`)
	if idem.Key != "" {
		q.WriteString(` INSERT INTO idempotency_keys (idempotency_key, request_hash, order_id, order_created_at, created_at) VALUES (?, ?, ?, ?, ?);`)
		args = append(args, idem.Key, idem.RequestHash, o.ID, o.CreatedAt, o.CreatedAt)
	}
	q.WriteString(` INSERT INTO orders (` + orderColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);`)
	args = append(args, o.ID, o.Status, o.Customer.Name, sealed[0], sealed[1], key, sealed[2], o.TotalCents,
		o.CreatedAt, o.UpdatedAt)
	q.WriteString(` INSERT INTO order_items (order_id, order_created_at, line, pizza, size, quantity, unit_price_cents) VALUES `)
	for i, it := range o.Items {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, o.ID, o.CreatedAt, i, it.Pizza, it.Size, it.Quantity, it.UnitPriceCents)
	}
	q.WriteString(`; INSERT INTO order_events (order_id, order_created_at, status, created_at) VALUES (?, ?, ?, ?); COMMIT`)
	args = append(args, o.ID, o.CreatedAt, o.Status, o.CreatedAt)
	return q.String(), args
}

// execBatch runs a BEGIN; …; COMMIT batch in one round trip on one connection. The server runs the statements
// in order and stops at the first error, which leaves the transaction open: it is rolled back here (a second
// round trip, on errors only), and a connection whose ROLLBACK fails is discarded, so the server rolls back
// when it closes. Either way nothing of a failed batch is ever committed.
// beforeCommit, when not nil (a test-only hook), runs after a batch sent without its COMMIT, and COMMIT follows.
func (s *Store) execBatch(ctx context.Context, q string, args []any, beforeCommit func(context.Context)) error {
	ctx, cancel := context.WithTimeout(ctx, MaxTransaction)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		// No connection to be had (database away, login refused): the caller may retry.
		return fmt.Errorf("%w: connect: %w", order.ErrUnavailable, err)
	}
	defer conn.Close()
	_, err = conn.ExecContext(ctx, q, args...)
	if err == nil && beforeCommit != nil {
		beforeCommit(ctx)
		_, err = conn.ExecContext(ctx, `COMMIT`)
	}
	if err == nil {
		return nil
	}
	if _, rbErr := conn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`); rbErr != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return err
}

// OrderByIdempotencyKey returns the order created under key and its request hash, from the primary: it is part
// of a write (the replay of a retried POST).
func (s *Store) OrderByIdempotencyKey(ctx context.Context, key string) (order.Order, []byte, error) {
	var (
		id      string
		created time.Time
		hash    []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT order_id, order_created_at, request_hash FROM idempotency_keys WHERE idempotency_key = ?`, key).
		Scan(&id, &created, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return order.Order{}, nil, order.ErrNotFound
	}
	if err != nil {
		return order.Order{}, nil, fmt.Errorf("%w: find idempotency key: %w", order.ErrUnavailable, err)
	}
	orders, err := fetch(ctx, s.db, `SELECT `+orderColumns+` FROM orders WHERE id = ? AND created_at = ?`, id, created)
	if err != nil {
		return order.Order{}, nil, err
	}
	if len(orders) == 0 {
		return order.Order{}, nil, order.ErrNotFound
	}
	if err := s.pii.openAll(ctx, orders); err != nil {
		return order.Order{}, nil, err
	}
	return orders[0].Order, hash, nil
}

// Transition changes the status if the current one is among from, and appends the event, atomically. The
// status guard in the UPDATE makes concurrent changes safe without a lock read.
func (s *Store) Transition(ctx context.Context, id string, from []order.Status, to order.Status, at time.Time) (err error) {
	lo, hi, ok := createdRange(id)
	if !ok {
		return order.ErrNotFound
	}
	// The order's ID (no customer data: it opens nothing without the tracking token) links the status
	// change's trace to the order's: Jaeger finds both by the tag.
	ctx, span := tracing.Span(ctx, "store change status", semconv.DBSystemNameMariaDB,
		attribute.String("pizza.order_id", id), attribute.String("pizza.status", string(to)))
	defer func() { tracing.End(span, err) }()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		args := []any{to, at, id, lo, hi}
		for _, f := range from {
			args = append(args, f)
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND created_at BETWEEN ? AND ? AND status IN (?`+
				strings.Repeat(", ?", len(from)-1)+`)`, args...)
		if err != nil {
			return fmt.Errorf("update status: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var current order.Status
			err := tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = ? AND created_at BETWEEN ? AND ?`, id, lo, hi).Scan(&current)
			if errors.Is(err, sql.ErrNoRows) {
				return order.ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("read status: %w", err)
			}
			return &order.IllegalTransitionError{From: current, To: to}
		}
		// The event takes its order's creation time (its partition) from the row just updated.
		_, err = tx.ExecContext(ctx, `INSERT INTO order_events (order_id, order_created_at, status, created_at)
			SELECT id, created_at, ?, ? FROM orders WHERE id = ? AND created_at BETWEEN ? AND ?`, to, at, id, lo, hi)
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		return nil
	})
}

// maxAttempts bounds retries of a transaction InnoDB chose as a deadlock victim.
const maxAttempts = 3

// inTx runs fn in a transaction, committing on nil and retrying deadlock victims.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	var err error
	for range maxAttempts {
		if err = s.tryTx(ctx, fn); !isDeadlock(err) {
			return err
		}
	}
	return err
}

func (s *Store) tryTx(ctx context.Context, fn func(*sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, MaxTransaction)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		// No connection to be had (database away, login refused): the caller may retry.
		return fmt.Errorf("%w: begin: %w", order.ErrUnavailable, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// MySQL error numbers this store reacts to.
const (
	errDuplicateEntry = 1062
	errDeadlock       = 1213
)

func isDuplicate(err error, key string) bool {
	var me *mysql.MySQLError
	// MySQL 8 names the key "idempotency_keys.idempotency_keys_key", MariaDB "idempotency_keys_key".
	return errors.As(err, &me) && me.Number == errDuplicateEntry && strings.Contains(me.Message, key)
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errDeadlock
}
