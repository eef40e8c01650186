package order

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
)

// Endpoints collects the service's endpoints. On the server side each wraps a Service; on the client side
// each is a go-kit HTTP client, and Endpoints itself implements Service.
type Endpoints struct {
	MenuEndpoint         endpoint.Endpoint
	CreateOrderEndpoint  endpoint.Endpoint
	GetOrderEndpoint     endpoint.Endpoint
	ListOrdersEndpoint   endpoint.Endpoint
	ChangeStatusEndpoint endpoint.Endpoint
}

var _ Service = Endpoints{}

// MakeServerEndpoints wraps s, applying mw (in order, outermost first) to every endpoint; mw gets the
// endpoint's name for logs and metrics.
func MakeServerEndpoints(s Service, mw ...func(name string) endpoint.Middleware) Endpoints {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint { return applyMiddleware(name, e, mw) }
	return Endpoints{
		MenuEndpoint: wrap("menu", func(ctx context.Context, _ any) (any, error) {
			return s.Menu(ctx)
		}),
		CreateOrderEndpoint: wrap("create_order", func(ctx context.Context, req any) (any, error) {
			return s.CreateOrder(ctx, req.(NewOrder))
		}),
		GetOrderEndpoint: wrap("get_order", func(ctx context.Context, req any) (any, error) {
			return s.GetOrder(ctx, req.(GetOrderRequest).ID)
		}),
		ListOrdersEndpoint: wrap("list_orders", func(ctx context.Context, req any) (any, error) {
			return s.ListOrders(ctx, req.(ListFilter))
		}),
		ChangeStatusEndpoint: wrap("change_status", func(ctx context.Context, req any) (any, error) {
			r := req.(ChangeStatusRequest)
			return s.ChangeStatus(ctx, r.ID, r.Status)
		}),
	}
}

// EventSink is how an event stream reaches its client; the transport implements it.
type EventSink interface {
	// Open tells the client that its stream begins. Until then the stream can still be refused with an error.
	Open() error
	Send(Event) error
	// KeepAlive is sent every heartbeat while nothing happens; it also finds clients that are gone.
	KeepAlive() error
}

// StreamEventsRequest asks to follow events (see EventStreams.Stream), written to Sink.
type StreamEventsRequest struct {
	StreamRequest
	Heartbeat time.Duration
	Sink      EventSink
}

// LongLived tells the endpoint middleware that the call lasts as long as the stream: it gets no deadline.
func (StreamEventsRequest) LongLived() {}

// MakeStreamEndpoint serves event streams from streams (in service order/eventstream's JetStream consumers), applying mw (outermost
// first) under the name "stream_events". A call lasts as long as its stream, so the middleware sees it once,
// when it ends: with the client, at shutdown (ctx), after an order's final status, or with ErrSlowSubscriber.
func MakeStreamEndpoint(streams EventStreams, mw ...func(name string) endpoint.Middleware) endpoint.Endpoint {
	return applyMiddleware("stream_events", func(ctx context.Context, req any) (any, error) {
		r := req.(StreamEventsRequest)
		if r.OrderID != "" && !ValidID(r.OrderID) {
			return nil, ErrNotFound
		}
		if err := streams.Ready(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if err := r.Sink.Open(); err != nil {
			return nil, nil // the client left before its stream began
		}
		var clientGone bool
		err := streams.Stream(ctx, r.StreamRequest, r.Heartbeat,
			func(e Event) error { err := r.Sink.Send(e); clientGone = err != nil; return err },
			func() error { err := r.Sink.KeepAlive(); clientGone = err != nil; return err })
		switch {
		case errors.Is(err, ErrSlowSubscriber):
			return nil, err
		case clientGone || ctx.Err() != nil:
			return nil, nil // the client left or the server is stopping: how streams end
		}
		return nil, err
	}, mw)
}

// applyMiddleware wraps e in mw, the first outermost.
func applyMiddleware(name string, e endpoint.Endpoint, mw []func(name string) endpoint.Middleware) endpoint.Endpoint {
	for i := len(mw) - 1; i >= 0; i-- {
		e = mw[i](name)(e)
	}
	return e
}

// Requests of the endpoints whose argument is not a single domain value.
type (
	GetOrderRequest     struct{ ID string }
	ChangeStatusRequest struct {
		ID     string
		Status Status
	}
)

func (e Endpoints) Menu(ctx context.Context) (Menu, error) {
	resp, err := e.MenuEndpoint(ctx, nil)
	if err != nil {
		return nil, err
	}
	return resp.(Menu), nil
}

func (e Endpoints) CreateOrder(ctx context.Context, n NewOrder) (Created, error) {
	resp, err := e.CreateOrderEndpoint(ctx, n)
	if err != nil {
		return Created{}, err
	}
	return resp.(Created), nil
}

func (e Endpoints) GetOrder(ctx context.Context, id string) (Order, error) {
	resp, err := e.GetOrderEndpoint(ctx, GetOrderRequest{ID: id})
	if err != nil {
		return Order{}, err
	}
	return resp.(Order), nil
}

func (e Endpoints) ListOrders(ctx context.Context, f ListFilter) (Page, error) {
	resp, err := e.ListOrdersEndpoint(ctx, f)
	if err != nil {
		return Page{}, err
	}
	return resp.(Page), nil
}

func (e Endpoints) ChangeStatus(ctx context.Context, id string, to Status) (Order, error) {
	resp, err := e.ChangeStatusEndpoint(ctx, ChangeStatusRequest{ID: id, Status: to})
	if err != nil {
		return Order{}, err
	}
	return resp.(Order), nil
}
