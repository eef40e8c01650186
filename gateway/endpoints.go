package gateway

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
)

// Endpoints are the gateway's go-kit endpoints.
type Endpoints struct {
	MenuEndpoint       endpoint.Endpoint
	PlaceOrderEndpoint endpoint.Endpoint
	GetOrderEndpoint   endpoint.Endpoint
}

// MakeEndpoints wraps s, applying mw (outermost first) to every endpoint.
func MakeEndpoints(s Service, mw ...func(name string) endpoint.Middleware) Endpoints {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint {
		for i := len(mw) - 1; i >= 0; i-- {
			e = mw[i](name)(e)
		}
		return e
	}
	return Endpoints{
		MenuEndpoint: wrap("menu", func(ctx context.Context, _ any) (any, error) {
			return s.Menu(ctx)
		}),
		PlaceOrderEndpoint: wrap("place_order", func(ctx context.Context, req any) (any, error) {
			return s.PlaceOrder(ctx, req.(order.NewOrder))
		}),
		GetOrderEndpoint: wrap("get_order", func(ctx context.Context, req any) (any, error) {
			return s.GetOrder(ctx, req.(string))
		}),
	}
}
