// Package httpapi is the order service's HTTP transport: handlers, request decoders and response encoders,
// the event streams, and the error table that the server's encoder, orderclient's decoder and the log and
// metric outcome share.
package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// MaxBodyBytes bounds a request body: a big order is a few KiB.
const MaxBodyBytes = 64 << 10

// Headers of the order API.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// MakeHTTPHandler mounts the order API on mux:
//
//	GET  /menu                 the menu
//	POST /orders               create an order (Idempotency-Key header honoured)
//	GET  /orders/{id}          one order
//	GET  /orders?status=&after=&limit=   a page of orders, oldest first
//	POST /orders/{id}/status   {"status": "ACCEPTED"}: move an order along its lifecycle
func MakeHTTPHandler(mux *http.ServeMux, e order.Endpoints) {
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(EncodeError)}
	mux.Handle("GET /menu", httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))
	mux.Handle("POST /orders", httptransport.NewServer(e.CreateOrderEndpoint, decodeNewOrder, encodeCreated, opts...))
	mux.Handle("GET /orders/{id}", httptransport.NewServer(e.GetOrderEndpoint, decodeGetOrder, encodeOK, opts...))
	mux.Handle("GET /orders", httptransport.NewServer(e.ListOrdersEndpoint, decodeListFilter, encodeOK, opts...))
	mux.Handle("POST /orders/{id}/status", httptransport.NewServer(e.ChangeStatusEndpoint, decodeChangeStatus, encodeOK, opts...))
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

// decodeNewOrder reads a NewOrder from a request: the body strictly, the idempotency key from its header.
func decodeNewOrder(_ context.Context, r *http.Request) (any, error) {
	var n order.NewOrder
	if err := httpjson.Decode(r, MaxBodyBytes, &n); err != nil {
		return nil, err
	}
	n.IdempotencyKey = r.Header.Get(IdempotencyKeyHeader)
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

// ChangeStatusBody is the body of POST /orders/{id}/status.
type ChangeStatusBody struct {
	Status order.Status `json:"status"`
}

func decodeChangeStatus(_ context.Context, r *http.Request) (any, error) {
	var b ChangeStatusBody
	if err := httpjson.Decode(r, MaxBodyBytes, &b); err != nil {
		return nil, err
	}
	return order.ChangeStatusRequest{ID: r.PathValue("id"), Status: b.Status}, nil
}

// MenuResponse is the body of GET /menu.
type MenuResponse struct {
	Pizzas order.Menu `json:"pizzas"`
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, MenuResponse{Pizzas: resp.(order.Menu)})
}

// encodeCreated answers 201 with the order and its Location; a replayed idempotent request says so in a header.
func encodeCreated(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(order.Created)
	w.Header().Set("Location", "/orders/"+url.PathEscape(c.Order.ID))
	if c.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

// encodeOK answers 200 with resp as JSON.
func encodeOK(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, resp)
}
