// Package httpapi is the order service's HTTP transport: handlers, request decoders and response encoders,
// the event streams, and the error encoder. What a client must agree on (routes, headers, bodies, the error
// table) is order/orderapi.
package httpapi

import (
	"context"
	"net/http"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// MaxBodyBytes bounds a request body: a big order is a few KiB.
const MaxBodyBytes = 64 << 10

// MakeHTTPHandler mounts the order API's routes (orderapi.Route*) on mux.
func MakeHTTPHandler(mux *http.ServeMux, e order.Endpoints) {
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(EncodeError)}
	mux.Handle(orderapi.RouteMenu.String(), httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))
	mux.Handle(orderapi.RouteCreateOrder.String(), httptransport.NewServer(e.CreateOrderEndpoint, decodeNewOrder, encodeCreated, opts...))
	mux.Handle(orderapi.RouteGetOrder.String(), httptransport.NewServer(e.GetOrderEndpoint, decodeGetOrder, encodeOK, opts...))
	mux.Handle(orderapi.RouteListOrders.String(), httptransport.NewServer(e.ListOrdersEndpoint, decodeListFilter, encodeOK, opts...))
	mux.Handle(orderapi.RouteChangeStatus.String(), httptransport.NewServer(e.ChangeStatusEndpoint, decodeChangeStatus, encodeOK, opts...))
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

// decodeNewOrder reads a NewOrder from a request: the body strictly, the idempotency key from its header.
func decodeNewOrder(_ context.Context, r *http.Request) (any, error) {
	var n order.NewOrder
	if err := httpjson.Decode(r, MaxBodyBytes, &n); err != nil {
		return nil, err
	}
	n.IdempotencyKey = r.Header.Get(orderapi.IdempotencyKeyHeader)
	return n, nil
}

func decodeGetOrder(_ context.Context, r *http.Request) (any, error) {
	return order.GetOrderRequest{ID: r.PathValue("id")}, nil
}

// decodeListFilter reads a ListFilter from the query: status, after (the cursor) and limit.
func decodeListFilter(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := order.ListFilter{Status: order.Status(q.Get("status")), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, &order.ValidationError{Field: "limit", Reason: "must be a whole number"}
		}
		f.Limit = n
	}
	return f, nil
}

func decodeChangeStatus(_ context.Context, r *http.Request) (any, error) {
	var b orderapi.ChangeStatusBody
	if err := httpjson.Decode(r, MaxBodyBytes, &b); err != nil {
		return nil, err
	}
	return order.ChangeStatusRequest{ID: r.PathValue("id"), Status: b.Status}, nil
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, orderapi.MenuResponse{Pizzas: resp.(order.Menu)})
}

// encodeCreated answers 201 with the order and its Location; a replayed idempotent request says so in a header.
func encodeCreated(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(order.Created)
	w.Header().Set("Location", orderapi.RouteGetOrder.Path(c.Order.ID))
	if c.Replayed {
		w.Header().Set(orderapi.ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

// encodeOK answers 200 with resp as JSON.
func encodeOK(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, resp)
}
