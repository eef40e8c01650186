package gateway

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/kitmw"
)

// Endpoints are the gateway's go-kit endpoints.
type Endpoints struct {
	MenuEndpoint          endpoint.Endpoint
	PlaceOrderEndpoint    endpoint.Endpoint
	TrackOrderEndpoint    endpoint.Endpoint
	ListOrdersEndpoint    endpoint.Endpoint
	StaffGetOrderEndpoint endpoint.Endpoint
	ChangeStatusEndpoint  endpoint.Endpoint
	// Event streams: a call lasts as long as its stream.
	TrackEventsEndpoint endpoint.Endpoint
	StaffEventsEndpoint endpoint.Endpoint
}

type trackRequest struct{ ID, Token string }

type changeStatusRequest struct {
	ID     string
	Status order.Status
}

// eventsRequest asks to follow one order's events (a customer, holding its tracking token) or every order's
// (staff). Relay is the transport's: it relays the order service's stream until the stream ends.
type eventsRequest struct {
	ID, Token string
	Relay     func(ctx context.Context) error
}

// LongLived tells the endpoint middleware that the call lasts as long as the stream: it gets no deadline
// (the transport bounds a stream's lifetime).
func (eventsRequest) LongLived() {}

var _ kitmw.LongLived = eventsRequest{}

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
		TrackEventsEndpoint: wrap("track_order_events", func(ctx context.Context, req any) (any, error) {
			r := req.(eventsRequest)
			if _, err := s.TrackOrder(ctx, r.ID, r.Token); err != nil {
				return nil, err
			}
			return nil, r.Relay(ctx)
		}),
		StaffEventsEndpoint: wrap("staff_order_events", func(ctx context.Context, req any) (any, error) {
			return nil, req.(eventsRequest).Relay(ctx)
		}),
	}
}
