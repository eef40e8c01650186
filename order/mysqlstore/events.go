package mysqlstore

import (
	"context"
	"fmt"

	"github.com/pizzajoint/mesh/order"
)

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
