package mysqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/pizzajoint/mesh/order"
)

// Unrelayed returns at most limit events not yet marked relayed, in ID order, read from the primary: the
// outbox that order/eventrelay publishes. An event whose transaction commits after a later ID was read shows up
// in a later call.
func (s *Store) Unrelayed(ctx context.Context, limit int) ([]order.Event, error) {
	return s.queryEvents(ctx, "query unrelayed events", `SELECT id, order_id, status, created_at FROM order_events
		WHERE relayed = FALSE ORDER BY id LIMIT ?`, limit)
}

// MarkRelayed records that the events with these IDs are in the stream. Marking one twice is harmless.
func (s *Store) MarkRelayed(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `UPDATE order_events SET relayed = TRUE WHERE id IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("%w: mark events relayed: %w", order.ErrUnavailable, err)
	}
	return nil
}
