// Package gateway is the public API of Pizza Joint: its Service (the edge's checks before the order service,
// called through the mesh), go-kit endpoints, HTTP and stream transports, and the one error table every
// answer is written from. It holds no data of its own and never touches the database. Its parts each have a
// package: edge (limits, page headers), staff (sign-in, sessions, the board), customer (the customer's
// pages), stream (the relay of order's event streams).
package gateway

import (
	"context"
	"crypto/subtle"

	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/order"
)

// Service is what the edge offers.
type Service interface {
	Menu(ctx context.Context) (order.Menu, error)
	PlaceOrder(ctx context.Context, n order.NewOrder) (order.Created, error)
	// TrackOrder returns the order to the customer holding its tracking token.
	TrackOrder(ctx context.Context, id, token string) (order.Order, error)

	// Staff operations; the transport lets only authenticated staff reach them.
	ListOrders(ctx context.Context, f order.ListFilter) (order.Page, error)
	StaffGetOrder(ctx context.Context, id string) (order.Order, error)
	ChangeStatus(ctx context.Context, id string, to order.Status) (order.Order, error)
}

// ErrUnauthenticated is a request without valid credentials (tracking token or staff token): the edge's
// one sentinel for both, so staff sign-in (gateway/staff) answers it through the same row.
var ErrUnauthenticated = edge.ErrUnauthenticated

type service struct {
	orders order.Service
}

// NewService returns the edge over orders (in the mesh, an orderclient on the sidecar upstream).
func NewService(orders order.Service) Service {
	return &service{orders: orders}
}

func (s *service) Menu(ctx context.Context) (order.Menu, error) {
	return s.orders.Menu(ctx)
}

// PlaceOrder checks the order's shape here, so bad input never crosses the mesh; the order service checks
// it against the menu.
func (s *service) PlaceOrder(ctx context.Context, n order.NewOrder) (order.Created, error) {
	if err := n.Validate(); err != nil {
		return order.Created{}, err
	}
	return s.orders.CreateOrder(ctx, n)
}

// TrackOrder answers ErrNotFound for a wrong token as for an unknown order, so tokens cannot be used to
// probe which orders exist.
func (s *service) TrackOrder(ctx context.Context, id, token string) (order.Order, error) {
	if token == "" {
		return order.Order{}, ErrUnauthenticated
	}
	if !order.ValidID(id) {
		return order.Order{}, order.ErrNotFound
	}
	o, err := s.orders.GetOrder(ctx, id)
	if err != nil {
		return order.Order{}, err
	}
	if o.TrackingToken == "" || subtle.ConstantTimeCompare([]byte(o.TrackingToken), []byte(token)) != 1 {
		return order.Order{}, order.ErrNotFound
	}
	return o, nil
}

// Staff see orders without their customers' tracking tokens: they have no use for them.

func (s *service) ListOrders(ctx context.Context, f order.ListFilter) (order.Page, error) {
	p, err := s.orders.ListOrders(ctx, f)
	for i := range p.Orders {
		p.Orders[i].TrackingToken = ""
	}
	return p, err
}

func (s *service) StaffGetOrder(ctx context.Context, id string) (order.Order, error) {
	if !order.ValidID(id) {
		return order.Order{}, order.ErrNotFound
	}
	o, err := s.orders.GetOrder(ctx, id)
	o.TrackingToken = ""
	return o, err
}

func (s *service) ChangeStatus(ctx context.Context, id string, to order.Status) (order.Order, error) {
	o, err := s.orders.ChangeStatus(ctx, id, to)
	o.TrackingToken = ""
	return o, err
}
