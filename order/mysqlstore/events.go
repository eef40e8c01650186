package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pizzajoint/mesh/order"
)

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
	return s.queryEvents(ctx, "query events", query, args...)
}

// queryEvents runs a query of (id, order_id, status, created_at) rows on the primary.
func (s *Store) queryEvents(ctx context.Context, what, query string, args ...any) ([]order.Event, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", order.ErrUnavailable, what, err)
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
