package gateway

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
)

// Endpoints are the gateway's go-kit endpoints.
type Endpoints struct {
	MenuEndpoint          endpoint.Endpoint
	PlaceOrderEndpoint    endpoint.Endpoint
	TrackOrderEndpoint    endpoint.Endpoint
	ListOrdersEndpoint    endpoint.Endpoint
	StaffGetOrderEndpoint endpoint.Endpoint
	ChangeStatusEndpoint  endpoint.Endpoint
}

type trackRequest struct{ ID, Token string }

type changeStatusRequest struct {
	ID     string
	Status order.Status
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
		TrackOrderEndpoint: wrap("track_order", func(ctx context.Context, req any) (any, error) {
			r := req.(trackRequest)
			return s.TrackOrder(ctx, r.ID, r.Token)
		}),
		ListOrdersEndpoint: wrap("staff_list_orders", func(ctx context.Context, req any) (any, error) {
			return s.ListOrders(ctx, req.(order.ListFilter))
		}),
		StaffGetOrderEndpoint: wrap("staff_get_order", func(ctx context.Context, req any) (any, error) {
			return s.StaffGetOrder(ctx, req.(string))
		}),
		ChangeStatusEndpoint: wrap("staff_change_status", func(ctx context.Context, req any) (any, error) {
			r := req.(changeStatusRequest)
			return s.ChangeStatus(ctx, r.ID, r.Status)
		}),
	}
}
