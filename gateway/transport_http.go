package gateway

import (
	"context"
	"net/http"
	"net/url"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// MakeHTTPHandler mounts the public API on mux:
//
//	POST /pizza       place an order (JSON body, optional Idempotency-Key header) → 201 + Location
//	GET  /pizza/{id}  the order
//	GET  /menu        the menu with prices in cents
//
// Bad input and the order service's errors are answered by order.EncodeError, the one error encoder.
func MakeHTTPHandler(mux *http.ServeMux, e Endpoints) {
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(order.EncodeError)}
	mux.Handle("POST /pizza", httptransport.NewServer(e.PlaceOrderEndpoint, order.DecodeNewOrder, encodePlaced, opts...))
	mux.Handle("GET /pizza/{id}", httptransport.NewServer(e.GetOrderEndpoint, decodeOrderID, encodeJSON, opts...))
	mux.Handle("GET /menu", httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		order.EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusNotFound, Msg: "no such endpoint"}, w)
	}))
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

func decodeOrderID(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil }

func encodePlaced(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(order.Created)
	w.Header().Set("Location", "/pizza/"+url.PathEscape(c.Order.ID))
	if c.Replayed {
		w.Header().Set(order.ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

func encodeJSON(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, resp)
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, map[string]any{"pizzas": resp})
}
