package mysqlstore

import (
	"context"
	"strings"

	"github.com/pizzajoint/mesh/order"
)

// GetOrderQuery is the statement Get runs, for tests that EXPLAIN it.
const GetOrderQuery = getOrderQuery

// CreatedRange exposes createdRange to the tests.
var CreatedRange = createdRange

// MigrateTo brings the schema up to version (and no further), to fill a database with an older schema.
var MigrateTo = migrateTo

// CreateInThreeRoundTrips writes an order as the store did before its batch took BEGIN and COMMIT in:
// BEGIN, the INSERTs as one batch, COMMIT. Only for the benchmark's comparison.
func (s *Store) CreateInThreeRoundTrips(ctx context.Context, o order.Order, idem order.Idempotency) error {
	q, args := createBatch(o, []string{o.Customer.Phone, o.Customer.Address, o.TrackingToken}, nil, idem)
	q = strings.TrimSuffix(strings.TrimPrefix(q, "BEGIN;"), "; COMMIT")
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
