// Package mysqlstore keeps orders in MariaDB 10.11 (what the tests run; MySQL 8 is untested since the
// replica's read-your-writes uses MariaDB's GTID functions). Every write is one transaction, so an error never
// leaves a partial order behind. Orders, items and events are partitioned by month (see MaintainPartitions).
package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/oklog/ulid/v2"
	"github.com/pizzajoint/mesh/order"
)

// Store is an order.Store on MySQL. Writes, idempotency look-ups and the event log use the primary (db);
// Get and List go to the replica when one is configured (see Replica).
type Store struct {
	db      *sql.DB
	replica *Replica
	pii     PIICipher
	// beforeCommit is a test-only hook (WithBeforeCommitHook): nil in service.
	beforeCommit func(context.Context)
}

var _ order.Store = (*Store)(nil)

// MaxTransaction bounds every write transaction: past it the transaction is cancelled, and the driver closes
// its connection so MariaDB rolls it back. The event hub relies on the bound: a gap in event IDs older than
// it is a rollback, never a commit still to come (see eventhub.Hub). A write normally takes milliseconds; the
// gateway gives up on a call after 5 s, so nothing waits for a longer transaction anyway.
const MaxTransaction = 5 * time.Second

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

// Create stores the idempotency key, the order, its items and its CREATED event in one transaction and one
// round trip: BEGIN, the INSERTs and COMMIT go as one multi-statement batch (see execBatch). The key goes
// first, so a taken key stops the batch before anything else is written.
func (s *Store) Create(ctx context.Context, o order.Order, idem order.Idempotency) error {
	// Sealed before the transaction: no outside call while rows are locked.
	sealed, key, err := s.seal(ctx, o)
	if err != nil {
		return err
	}
	q, args := createBatch(o, sealed, key, idem)
	if s.beforeCommit != nil {
		q = strings.TrimSuffix(q, "; COMMIT") // test-only: COMMIT goes on its own, after the hook
	}
	for range maxAttempts {
		if err = s.execBatch(ctx, q, args, s.beforeCommit); !isDeadlock(err) {
			break
		}
	}
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
	orders, err := s.fetch(ctx, s.db, `SELECT `+orderColumns+` FROM orders WHERE id = ? AND created_at = ?`, id, created)
	if err != nil {
		return order.Order{}, nil, err
	}
	if len(orders) == 0 {
		return order.Order{}, nil, order.ErrNotFound
	}
	if err := s.openAll(ctx, orders); err != nil {
		return order.Order{}, nil, err
	}
	return orders[0].Order, hash, nil
}

// getOrderQuery names the order's month through its ID's time, so one partition is read.
const getOrderQuery = `SELECT ` + orderColumns + ` FROM orders WHERE id = ? AND created_at BETWEEN ? AND ?`

// getItemsQuery reads one order's items, in its month's partition too.
const getItemsQuery = `SELECT order_id, pizza, size, quantity, unit_price_cents FROM order_items
	WHERE order_id = ? AND order_created_at BETWEEN ? AND ? ORDER BY line`

// fetchOne reads one order and its items in one round trip (a multi-statement batch with two result sets).
// With pos set, the batch first has the replica wait for that position; if it did not get there in maxWait,
// the rows that follow may be stale and are dropped (caughtUp false).
func fetchOne(ctx context.Context, db *sql.DB, id string, from, to time.Time, pos string, maxWait time.Duration) (
	orders []sealedOrder, caughtUp bool, err error) {
	q, args := getOrderQuery+`; `+getItemsQuery, []any{id, from, to, id, from, to}
	if pos != "" {
		q, args = `SELECT MASTER_GTID_WAIT(?, ?); `+q, append([]any{pos, maxWait.Seconds()}, args...)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("%w: query order: %w", order.ErrUnavailable, err)
	}
	defer rows.Close()
	if pos != "" {
		var reached sql.NullInt64
		if rows.Next() {
			err = rows.Scan(&reached)
		}
		if err != nil || !reached.Valid || reached.Int64 != 0 || !rows.NextResultSet() {
			return nil, false, errors.Join(err, rows.Err())
		}
	}
	for rows.Next() {
		var o sealedOrder
		if err := scanOrder(rows, &o); err != nil {
			return nil, false, err
		}
		orders = append(orders, o)
	}
	if !rows.NextResultSet() {
		return nil, false, fmt.Errorf("read order: %w", errors.Join(rows.Err(), errors.New("no items result")))
	}
	for rows.Next() {
		var (
			oid string
			it  order.Item
		)
		if err := rows.Scan(&oid, &it.Pizza, &it.Size, &it.Quantity, &it.UnitPriceCents); err != nil {
			return nil, false, fmt.Errorf("scan item: %w", err)
		}
		if len(orders) == 1 {
			orders[0].Items = append(orders[0].Items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read order: %w", err)
	}
	return orders, true, nil
}

// Get returns one order with its items, from the replica when it has caught up (see Replica).
func (s *Store) Get(ctx context.Context, id string) (order.Order, error) {
	from, to, ok := createdRange(id)
	if !ok {
		return order.Order{}, order.ErrNotFound
	}
	var orders []sealedOrder
	err := s.read(ctx, func(ctx context.Context, db *sql.DB, pos string, maxWait time.Duration) (bool, error) {
		var (
			caughtUp bool
			err      error
		)
		orders, caughtUp, err = fetchOne(ctx, db, id, from, to, pos, maxWait)
		return caughtUp, err
	})
	if err != nil {
		return order.Order{}, err
	}
	if len(orders) == 0 {
		return order.Order{}, order.ErrNotFound
	}
	if err := s.openAll(ctx, orders); err != nil {
		return order.Order{}, err
	}
	return orders[0].Order, nil
}

// List returns a page of orders, oldest first, after the cursor, from the replica when it has caught up.
func (s *Store) List(ctx context.Context, f order.ListFilter) (order.Page, error) {
	q := `SELECT ` + orderColumns + ` FROM orders WHERE id > ?`
	args := []any{f.After}
	if from, _, ok := createdRange(f.After); ok {
		q += ` AND created_at >= ?` // IDs after the cursor were made no earlier: older months are skipped
		args = append(args, from)
	}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, f.Limit+1) // one more tells whether there is a next page
	var orders []sealedOrder
	err := s.read(ctx, func(ctx context.Context, db *sql.DB, pos string, maxWait time.Duration) (bool, error) {
		if pos != "" {
			if caughtUp, err := waitFor(ctx, db, pos, maxWait); !caughtUp || err != nil {
				return false, err
			}
		}
		var err error
		orders, err = s.fetch(ctx, db, q, args...)
		return true, err
	})
	if err != nil {
		return order.Page{}, err
	}
	if err := s.openAll(ctx, orders); err != nil {
		return order.Page{}, err
	}
	p := order.Page{Orders: make([]order.Order, 0, len(orders))}
	for _, o := range orders {
		p.Orders = append(p.Orders, o.Order)
	}
	if len(p.Orders) > f.Limit {
		p.Orders = p.Orders[:f.Limit]
		p.NextCursor = p.Orders[f.Limit-1].ID
	}
	return p, nil
}

// Transition changes the status if the current one is among from, and appends the event, atomically. The
// status guard in the UPDATE makes concurrent changes safe without a lock read.
func (s *Store) Transition(ctx context.Context, id string, from []order.Status, to order.Status, at time.Time) error {
	lo, hi, ok := createdRange(id)
	if !ok {
		return order.ErrNotFound
	}
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

// sealedOrder is an order as read, before its PII is opened: opening may call Vault, which must not be
// mistaken for a replica failure or happen while a database connection is held.
type sealedOrder struct {
	order.Order
	key sql.NullString
}

// fetch reads orders and then their items in one more round trip, on db (primary or replica).
func (s *Store) fetch(ctx context.Context, db *sql.DB, q string, args ...any) ([]sealedOrder, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: query orders: %w", order.ErrUnavailable, err)
	}
	defer rows.Close()
	var (
		orders []sealedOrder
		index  = map[string]int{}
	)
	for rows.Next() {
		var o sealedOrder
		if err := scanOrder(rows, &o); err != nil {
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
	args = make([]any, 0, len(orders)+2)
	oldest, newest := orders[0].CreatedAt, orders[0].CreatedAt
	for _, o := range orders {
		args = append(args, o.ID)
		oldest, newest = minTime(oldest, o.CreatedAt), maxTime(newest, o.CreatedAt)
	}
	args = append(args, oldest, newest)
	items, err := db.QueryContext(ctx,
		`SELECT order_id, pizza, size, quantity, unit_price_cents FROM order_items WHERE order_id IN (?`+
			strings.Repeat(", ?", len(orders)-1)+`) AND order_created_at BETWEEN ? AND ? ORDER BY order_id, line`, args...)
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

// scanOrder reads one row of orderColumns.
func scanOrder(rows *sql.Rows, o *sealedOrder) error {
	var tok sql.NullString
	if err := rows.Scan(&o.ID, &o.Status, &o.Customer.Name, &o.Customer.Phone, &o.Customer.Address, &o.key, &tok,
		&o.TotalCents, &o.CreatedAt, &o.UpdatedAt); err != nil {
		return fmt.Errorf("scan order: %w", err)
	}
	o.TrackingToken = tok.String
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// openAll opens the PII of every order read.
func (s *Store) openAll(ctx context.Context, orders []sealedOrder) error {
	for i := range orders {
		if err := s.open(ctx, &orders[i].Order, orders[i].key); err != nil {
			return err
		}
	}
	return nil
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
		if from, to, ok := createdRange(q.OrderID); ok {
			query += ` AND order_created_at BETWEEN ? AND ?` // one order's events live in its month
			args = append(args, from, to)
		}
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

// TransactionBound is MaxTransaction: how long an event's ID may be taken but not yet committed.
func (s *Store) TransactionBound() time.Duration { return MaxTransaction }

// LastEventID is the newest event's ID, 0 for an empty log.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(id) FROM order_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("%w: last event: %w", order.ErrUnavailable, err)
	}
	return id.Int64, nil
}
