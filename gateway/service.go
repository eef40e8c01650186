// Package gateway is the public edge: it takes customers' requests over HTTPS, checks them, and calls the
// order service through the mesh. It holds no data of its own and never touches the database.
package gateway

import (
	"context"

	"github.com/pizzajoint/mesh/order"
)

// Service is what the edge offers customers.
type Service interface {
	Menu(ctx context.Context) (order.Menu, error)
	PlaceOrder(ctx context.Context, n order.NewOrder) (order.Created, error)
	GetOrder(ctx context.Context, id string) (order.Order, error)
}

type service struct {
	orders order.Service
}

// NewService returns the edge over orders (in the mesh, an order.NewHTTPClient on the sidecar upstream).
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

func (s *service) GetOrder(ctx context.Context, id string) (order.Order, error) {
	if !order.ValidID(id) {
		return order.Order{}, order.ErrNotFound
	}
	return s.orders.GetOrder(ctx, id)
}
