package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
)

// SQLTransport is the ceiling: an http.RoundTripper that, instead of calling a service, writes the order's
// rows straight into MySQL with order/mysqlstore (order, items and CREATED event in one transaction). Going through vegeta like the other setups keeps the same workers, pacing and timing, so
// the only difference is everything between the client and the database.
type SQLTransport struct {
	DB *sql.DB
}

// RoundTrip decodes the order from the request and inserts it; it answers 201 like the gateway.
func (t SQLTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var n order.NewOrder
	err := json.NewDecoder(req.Body).Decode(&n)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("decode order: %w", err)
	}
	row, err := newOrderRow(n, req.Header.Get(gateway.IdempotencyKeyHeader), time.Now())
	if err != nil {
		return nil, err
	}
	if err := insertOrder(req.Context(), t.DB, row); err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: http.StatusCreated, Status: "201 Created", Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")),
		Request: req}, nil
}

// orderRow is what the service stores for a new order.
type orderRow struct {
	order.Order
	key  string
	hash []byte
}

// newOrderRow prices and hashes n with the order domain's own functions, so the ceiling stores what the
// service would.
func newOrderRow(n order.NewOrder, key string, now time.Time) (orderRow, error) {
	now = now.UTC().Truncate(time.Microsecond)
	items, total, err := order.DefaultMenu.PriceItems(n.Items)
	if err != nil {
		return orderRow{}, fmt.Errorf("price: %w", err)
	}
	return orderRow{Order: order.Order{
		ID: order.NewID(now), Status: order.StatusCreated, Customer: n.Customer,
		Items: items, TotalCents: total, CreatedAt: now, UpdatedAt: now,
	}, key: key, hash: order.RequestHash(n)}, nil
}

// insertOrder stores the row with order/mysqlstore itself, so the ceiling always runs the service's statements
// (PII unsealed: sealing is the service's own CPU, counted in the other setups).
func insertOrder(ctx context.Context, db *sql.DB, r orderRow) error {
	return mysqlstore.New(db).Create(ctx, r.Order, order.Idempotency{Key: r.key, RequestHash: r.hash})
}
