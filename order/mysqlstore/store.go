// Package mysqlstore keeps orders in MySQL 8 or MariaDB 10.11. Every write is one transaction, so an error
// never leaves a partial order behind.
package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pizzajoint/mesh/order"
)

// Store is an order.OrderStore on MySQL.
type Store struct {
	db  *sql.DB
	pii PIICipher
	// beforeCommit is a test-only hook (WithBeforeCommitHook): nil in service.
	beforeCommit func(context.Context)
}

var _ order.OrderStore = (*Store)(nil)

// PIICipher seals customer phone and address before they reach MySQL and opens them when read. The key it
// returns is stored with the row (envelope.Keyring implements it with Vault transit data keys).
type PIICipher interface {
	Seal(ctx context.Context, aad []byte, values ...string) (key string, sealed []string, err error)
	Open(ctx context.Context, key string, aad []byte, sealed ...string) ([]string, error)
	Rewrap(ctx context.Context, keys []string) ([]string, error)
}

// Option configures a Store.
type Option func(*Store)

// WithPII encrypts customer PII with c. Without it PII is stored as given (development only).
func WithPII(c PIICipher) Option { return func(s *Store) { s.pii = c } }

// WithBeforeCommitHook runs hook inside Create's transaction, after its INSERTs and before COMMIT. Test-only:
// the fault tests use it to hold an order's transaction open and kill the process there (cmd/order enables it
// only when ORDER_TEST_HOLD_COMMIT_FILE is set).
func WithBeforeCommitHook(hook func(context.Context)) Option {
	return func(s *Store) { s.beforeCommit = hook }
}

// New returns a Store on db. The schema must be migrated (see Migrate).
func New(db *sql.DB, opts ...Option) *Store {
	s := &Store{db: db}
	for _, o := range opts {
		o(s)
	}
	return s
}

const orderColumns = `id, status, customer_name, customer_phone, customer_address, pii_key, tracking_token, total_cents, created_at, updated_at`

// Create stores the order, its items and its CREATED event in one transaction.
func (s *Store) Create(ctx context.Context, o order.Order, idem order.Idempotency) error {
	// Sealed before the transaction: no outside call while rows are locked.
	sealed, key, err := s.seal(ctx, o)
	if err != nil {
		return err
	}
	// The three INSERTs travel as one multi-statement batch: one round trip instead of three (with BEGIN and
	// COMMIT, three per order instead of five). MySQL stops at the first failing statement and the
	// transaction is rolled back, so a batch is still all or nothing.
	q := strings.Builder{}
	q.WriteString(`INSERT INTO orders (` + orderColumns + `, idempotency_key, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);`)
	args := make([]any, 0, 12+6*len(o.Items)+3)
	args = append(args, o.ID, o.Status, o.Customer.Name, sealed[0], sealed[1], key, sealed[2], o.TotalCents,
		o.CreatedAt, o.UpdatedAt, nullIfEmpty(idem.Key), idem.RequestHash) // a nil hash is NULL
	q.WriteString(` INSERT INTO order_items (order_id, line, pizza, size, quantity, unit_price_cents) VALUES `)
	for i, it := range o.Items {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?)")
		args = append(args, o.ID, i, it.Pizza, it.Size, it.Quantity, it.UnitPriceCents)
	}
	q.WriteString(`; INSERT INTO order_events (order_id, status, created_at) VALUES (?, ?, ?)`)
	args = append(args, o.ID, o.Status, o.CreatedAt)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q.String(), args...)
		if isDuplicate(err, "orders_idempotency_key") {
			return order.ErrIdempotencyKeyTaken
		}
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if s.beforeCommit != nil {
			s.beforeCommit(ctx)
		}
		return nil
	})
}

// OrderByIdempotencyKey returns the order created under key and its request hash.
func (s *Store) OrderByIdempotencyKey(ctx context.Context, key string) (order.Order, []byte, error) {
	var (
		id   string
		hash []byte
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, request_hash FROM orders WHERE idempotency_key = ?`, key).Scan(&id, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return order.Order{}, nil, order.ErrNotFound
	}
	if err != nil {
		return order.Order{}, nil, fmt.Errorf("%w: find idempotency key: %w", order.ErrUnavailable, err)
	}
	o, err := s.Get(ctx, id)
	return o, hash, err
}

// Get returns one order with its items.
func (s *Store) Get(ctx context.Context, id string) (order.Order, error) {
	orders, err := s.query(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = ?`, id)
	if err != nil {
		return order.Order{}, err
	}
	if len(orders) == 0 {
		return order.Order{}, order.ErrNotFound
	}
	return orders[0], nil
}

// List returns a page of orders, oldest first, after the cursor.
func (s *Store) List(ctx context.Context, f order.ListFilter) (order.Page, error) {
	q := `SELECT ` + orderColumns + ` FROM orders WHERE id > ?`
	args := []any{f.After}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, f.Limit+1) // one more tells whether there is a next page
	orders, err := s.query(ctx, q, args...)
	if err != nil {
		return order.Page{}, err
	}
	p := order.Page{Orders: orders}
	if len(orders) > f.Limit {
		p.Orders = orders[:f.Limit]
		p.NextCursor = p.Orders[f.Limit-1].ID
	}
	return p, nil
}

// Transition changes the status if the current one is among from, and appends the event, atomically. The
// status guard in the UPDATE makes concurrent changes safe without a lock read.
func (s *Store) Transition(ctx context.Context, id string, from []order.Status, to order.Status, at time.Time) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		args := []any{to, at, id}
		for _, f := range from {
			args = append(args, f)
		}
		res, err := tx.ExecContext(ctx,
			`UPDATE orders SET status = ?, updated_at = ? WHERE id = ? AND status IN (?`+strings.Repeat(", ?", len(from)-1)+`)`,
			args...)
		if err != nil {
			return fmt.Errorf("update status: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var current order.Status
			err := tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = ?`, id).Scan(&current)
			if errors.Is(err, sql.ErrNoRows) {
				return order.ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("read status: %w", err)
			}
			return &order.IllegalTransitionError{From: current, To: to}
		}
		return appendEvent(ctx, tx, id, to, at)
	})
}

func appendEvent(ctx context.Context, tx *sql.Tx, id string, status order.Status, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO order_events (order_id, status, created_at) VALUES (?, ?, ?)`, id, status, at)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// query reads orders and then their items in one more round trip.
func (s *Store) query(ctx context.Context, q string, args ...any) ([]order.Order, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: query orders: %w", order.ErrUnavailable, err)
	}
	defer rows.Close()
	var (
		orders []order.Order
		index  = map[string]int{}
	)
	for rows.Next() {
		var (
			o        order.Order
			key, tok sql.NullString
		)
		if err := rows.Scan(&o.ID, &o.Status, &o.Customer.Name, &o.Customer.Phone, &o.Customer.Address, &key, &tok,
			&o.TotalCents, &o.CreatedAt, &o.UpdatedAt); err != nil {
			return nil, fmt.Errorf("scan order: %w", err)
		}
		o.TrackingToken = tok.String
		if err := s.open(ctx, &o, key); err != nil {
			return nil, err
		}
		index[o.ID] = len(orders)
		orders = append(orders, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}
	if len(orders) == 0 {
		return nil, nil
	}
	ids := make([]any, 0, len(orders))
	for _, o := range orders {
		ids = append(ids, o.ID)
	}
	items, err := s.db.QueryContext(ctx,
		`SELECT order_id, pizza, size, quantity, unit_price_cents FROM order_items WHERE order_id IN (?`+
			strings.Repeat(", ?", len(ids)-1)+`) ORDER BY order_id, line`, ids...)
	if err != nil {
		return nil, fmt.Errorf("query items: %w", err)
	}
	defer items.Close()
	for items.Next() {
		var (
			id string
			it order.Item
		)
		if err := items.Scan(&id, &it.Pizza, &it.Size, &it.Quantity, &it.UnitPriceCents); err != nil {
			return nil, fmt.Errorf("scan item: %w", err)
		}
		o := &orders[index[id]]
		o.Items = append(o.Items, it)
	}
	if err := items.Err(); err != nil {
		return nil, fmt.Errorf("read items: %w", err)
	}
	return orders, nil
}

// seal encrypts the order's PII and tracking token (in that order), bound to its ID so a value cannot be moved
// to another row.
func (s *Store) seal(ctx context.Context, o order.Order) (sealed []string, key any, err error) {
	plain := []string{o.Customer.Phone, o.Customer.Address, o.TrackingToken}
	if s.pii == nil {
		return plain, nil, nil
	}
	k, sealed, err := s.pii.Seal(ctx, []byte(o.ID), plain...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: seal customer data: %w", order.ErrUnavailable, err)
	}
	return sealed, k, nil
}

func (s *Store) open(ctx context.Context, o *order.Order, key sql.NullString) error {
	if !key.Valid {
		return nil // written without encryption
	}
	if s.pii == nil {
		return errors.New("order has encrypted customer data but the store has no PII cipher")
	}
	sealed := []string{o.Customer.Phone, o.Customer.Address}
	if o.TrackingToken != "" {
		sealed = append(sealed, o.TrackingToken)
	}
	plain, err := s.pii.Open(ctx, key.String, []byte(o.ID), sealed...)
	if err != nil {
		return fmt.Errorf("%w: open customer data of %s: %w", order.ErrUnavailable, o.ID, err)
	}
	o.Customer.Phone, o.Customer.Address = plain[0], plain[1]
	if len(plain) > 2 {
		o.TrackingToken = plain[2]
	}
	return nil
}

// RewrapPII re-encrypts the stored data keys to the transit key's newest version, after the operator rotated
// it. The sealed values do not change. It returns how many keys changed; running it again changes none.
func (s *Store) RewrapPII(ctx context.Context) (int, error) {
	if s.pii == nil {
		return 0, errors.New("no PII cipher configured")
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT pii_key FROM orders WHERE pii_key IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("list data keys: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	changed := 0
	for start := 0; start < len(keys); start += rewrapBatch {
		batch := keys[start:min(start+rewrapBatch, len(keys))]
		rewrapped, err := s.pii.Rewrap(ctx, batch)
		if err != nil {
			return changed, fmt.Errorf("rewrap: %w", err)
		}
		for i, old := range batch {
			if keyVersion(rewrapped[i]) == keyVersion(old) {
				continue // already on the newest version
			}
			if _, err := s.db.ExecContext(ctx, `UPDATE orders SET pii_key = ? WHERE pii_key = ?`, rewrapped[i], old); err != nil {
				return changed, fmt.Errorf("store rewrapped key: %w", err)
			}
			changed++
		}
	}
	return changed, nil
}

// rewrapBatch bounds one transit/rewrap call.
const rewrapBatch = 100

// keyVersion is the "vault:vN" prefix of a transit ciphertext.
func keyVersion(wrapped string) string {
	if i := strings.Index(wrapped[min(len(wrapped), len("vault:")):], ":"); i >= 0 {
		return wrapped[:len("vault:")+i]
	}
	return wrapped
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

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// MySQL error numbers this store reacts to.
const (
	errDuplicateEntry = 1062
	errDeadlock       = 1213
)

func isDuplicate(err error, key string) bool {
	var me *mysql.MySQLError
	// MySQL 8 names the key "orders.orders_idempotency_key", MariaDB "orders_idempotency_key".
	return errors.As(err, &me) && me.Number == errDuplicateEntry && strings.Contains(me.Message, key)
}

func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == errDeadlock
}

var _ order.EventLog = (*Store)(nil)

// Events reads the event log.
func (s *Store) Events(ctx context.Context, q order.EventQuery) ([]order.Event, error) {
	query := `SELECT id, order_id, status, created_at FROM order_events WHERE id > ?`
	args := []any{q.After}
	if q.UpTo > 0 {
		query += ` AND id <= ?`
		args = append(args, q.UpTo)
	}
	if q.OrderID != "" {
		query += ` AND order_id = ?`
		args = append(args, q.OrderID)
	}
	query += ` ORDER BY id LIMIT ?`
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: query events: %w", order.ErrUnavailable, err)
	}
	defer rows.Close()
	var events []order.Event
	for rows.Next() {
		var e order.Event
		if err := rows.Scan(&e.ID, &e.OrderID, &e.Status, &e.At); err != nil {
			return nil, fmt.Errorf("scan event: %w", err)
		}
		events = append(events, e)
	}
	return events, rows.Err()
}

// LastEventID is the newest event's ID, 0 for an empty log.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(id) FROM order_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("%w: last event: %w", order.ErrUnavailable, err)
	}
	return id.Int64, nil
}
