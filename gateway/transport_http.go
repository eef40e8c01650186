package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// TrackingTokenHeader carries a customer's tracking token; EventSource clients, which cannot set headers,
// pass it as the token query parameter instead.
const TrackingTokenHeader = "X-Tracking-Token"

// MakeHTTPHandler mounts the API on mux:
//
//	POST /pizza                       place an order (JSON, optional Idempotency-Key) → 201 + Location
//	GET  /pizza/{id}                  the order, for the holder of its tracking token
//	GET  /menu                        the menu with prices in cents
//	POST /staff/login, /staff/logout  staff session cookie from a staff token
//	GET  /staff/api/orders            a page of orders (status, after, limit)        staff only
//	GET  /staff/api/orders/{id}       one order                                      staff only
//	POST /staff/api/orders/{id}/status  {"status": "ACCEPTED"}                       staff only
//	GET  /staff/                      the staff portal
//	GET  /, /track/{id}, /app/…       the customer's pages: menu and cart, an order's tracking page
//
// Event streams are mounted by MakeStreamHandler. Errors are written by EncodeError, the one error encoder.
// options set the per-client rate limits of ordering and staff sign-in.
func MakeHTTPHandler(mux *http.ServeMux, e Endpoints, staff *StaffAuth, options ...Option) {
	o := applyOptions(options)
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(EncodeError)}
	mux.Handle("POST /pizza", rateLimited(o.orders, o.refused.With("limit", "orders"), httptransport.NewServer(e.PlaceOrderEndpoint, order.DecodeNewOrder, encodePlaced, opts...)))
	mux.Handle("GET /pizza/{id}", httptransport.NewServer(e.TrackOrderEndpoint, decodeTrackRequest, order.EncodeOK, opts...))
	mux.Handle("GET /menu", httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))

	mux.Handle("POST /staff/login", rateLimited(o.logins, o.refused.With("limit", "logins"), http.HandlerFunc(staff.Login)))
	mux.HandleFunc("POST /staff/logout", staff.Logout)
	mux.Handle("GET /staff/api/orders", staff.Require(httptransport.NewServer(e.ListOrdersEndpoint, order.DecodeListFilter, order.EncodeOK, opts...)))
	mux.Handle("GET /staff/api/orders/{id}", staff.Require(httptransport.NewServer(e.StaffGetOrderEndpoint, decodeOrderID, order.EncodeOK, opts...)))
	mux.Handle("POST /staff/api/orders/{id}/status", staff.Require(httptransport.NewServer(e.ChangeStatusEndpoint, decodeChangeStatus, order.EncodeOK, opts...)))
	mountStaffUI(mux)
	mountCustomerUI(mux)

	mux.Handle("/", http.HandlerFunc(notFound))
}

// EncodeError writes err as JSON: authentication failures and limits here, everything else as the order
// service's errors are mapped (order.EncodeError).
func EncodeError(ctx context.Context, err error, w http.ResponseWriter) {
	var limit *LimitError
	if errors.As(err, &limit) {
		encodeLimitError(ctx, limit, w)
		return
	}
	if errors.Is(err, ErrUnauthenticated) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pizza"`)
		_ = httpjson.Write(w, http.StatusUnauthorized, httpjson.ErrorBody{
			Error: "missing or invalid credentials", Code: "unauthenticated", RequestID: reqid.FromContext(ctx)})
		return
	}
	order.EncodeError(ctx, err, w)
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

func decodeOrderID(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil }

func trackingToken(r *http.Request) string {
	if t := r.Header.Get(TrackingTokenHeader); t != "" {
		return t
	}
	return r.URL.Query().Get("token")
}

func decodeTrackRequest(_ context.Context, r *http.Request) (any, error) {
	return trackRequest{ID: r.PathValue("id"), Token: trackingToken(r)}, nil
}

func decodeChangeStatus(_ context.Context, r *http.Request) (any, error) {
	var req changeStatusRequest
	if err := httpjson.Decode(r, order.MaxBodyBytes, &req); err != nil {
		return nil, err
	}
	req.ID = r.PathValue("id")
	return req, nil
}

func encodePlaced(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(order.Created)
	w.Header().Set("Location", "/pizza/"+url.PathEscape(c.Order.ID))
	if c.Replayed {
		w.Header().Set(order.ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, map[string]any{"currency": order.Currency, "pizzas": resp})
}
