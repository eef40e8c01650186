package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/order"
)

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
	err := s.replica.read(ctx, s.db, func(ctx context.Context, db *sql.DB, pos string, maxWait time.Duration) (bool, error) {
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
	if err := s.pii.openAll(ctx, orders); err != nil {
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
	err := s.replica.read(ctx, s.db, func(ctx context.Context, db *sql.DB, pos string, maxWait time.Duration) (bool, error) {
		if pos != "" {
			if caughtUp, err := waitFor(ctx, db, pos, maxWait); !caughtUp || err != nil {
				return false, err
			}
		}
		var err error
		orders, err = fetch(ctx, db, q, args...)
		return true, err
	})
	if err != nil {
		return order.Page{}, err
	}
	if err := s.pii.openAll(ctx, orders); err != nil {
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

// sealedOrder is an order as read, before its PII is opened: opening may call Vault, which must not be
// mistaken for a replica failure or happen while a database connection is held.
type sealedOrder struct {
	order.Order
	key sql.NullString
}

// fetch reads orders and then their items in one more round trip, on db (primary or replica).
func fetch(ctx context.Context, db *sql.DB, q string, args ...any) ([]sealedOrder, error) {
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
