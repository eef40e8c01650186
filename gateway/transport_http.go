package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/gateway/customer"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// Headers of the gateway's API.
const (
	// TrackingTokenHeader carries a customer's tracking token; EventSource clients, which cannot set
	// headers, pass it as the token query parameter instead.
	TrackingTokenHeader = "X-Tracking-Token"
	// IdempotencyKeyHeader makes POST /pizza safe to retry: a repeat answers with the order it created.
	IdempotencyKeyHeader = "Idempotency-Key"
	// ReplayedHeader marks the answer to such a repeat.
	ReplayedHeader = "Idempotent-Replayed"
)

// MaxBodyBytes bounds a request body: a big order is a few KiB.
const MaxBodyBytes = 64 << 10

// MakeHTTPHandler mounts the API on mux:
//
//	POST /pizza                       place an order (JSON, optional Idempotency-Key) → 201 + Location
//	GET  /pizza/{id}                  the order, for the holder of its tracking token
//	GET  /menu                        the menu with prices in cents
//	POST /staff/login, /staff/logout  staff session cookie from a staff token
//	GET  /staff/api/orders            a page of orders (status, after, limit)        staff only
//	GET  /staff/api/orders/{id}       one order                                      staff only
//	POST /staff/api/orders/{id}/status  {"status": "ACCEPTED"}                       staff only
//	GET  /staff/                      the staff portal (gateway/staff)
//	GET  /, /track/{id}, /app/…       the customer's pages: menu and cart, an order's tracking page
//	                                  (gateway/customer)
//
// Event streams are mounted by MakeStreamHandler. Errors are written by EncodeError, the one error encoder.
// options set the per-client rate limits of ordering and staff sign-in (gateway/edge).
func MakeHTTPHandler(mux *http.ServeMux, e Endpoints, auth *staff.Auth, options ...edge.Option) {
	o := edge.Apply(options)
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(EncodeError)}
	mux.Handle("POST /pizza", o.Orders(EncodeError, httptransport.NewServer(e.PlaceOrderEndpoint, decodePlaceOrder, encodePlaced, opts...)))
	mux.Handle("GET /pizza/{id}", httptransport.NewServer(e.TrackOrderEndpoint, decodeTrackRequest, encodeOK, opts...))
	mux.Handle("GET /menu", httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))

	mux.Handle("POST /staff/login", o.Logins(EncodeError, auth.Login(EncodeError)))
	mux.HandleFunc("POST /staff/logout", auth.Logout)
	mux.Handle("GET /staff/api/orders", requireStaff(o, auth, httptransport.NewServer(e.ListOrdersEndpoint, decodeListFilter, encodeOK, opts...)))
	mux.Handle("GET /staff/api/orders/{id}", requireStaff(o, auth, httptransport.NewServer(e.StaffGetOrderEndpoint, decodeOrderID, encodeOK, opts...)))
	mux.Handle("POST /staff/api/orders/{id}/status", requireStaff(o, auth, httptransport.NewServer(e.ChangeStatusEndpoint, decodeChangeStatus, encodeOK, opts...)))
	staff.MountBoard(mux)
	customer.Mount(mux, notFound)

	mux.Handle("/", http.HandlerFunc(notFound))
}

// requireStaff lets signed-in staff through to next; wrong bearer tokens draw on the sign-in limit.
func requireStaff(o edge.Limits, auth *staff.Auth, next http.Handler) http.Handler {
	guesses, refused := o.Guesses()
	return auth.RequireLimited(guesses, refused, EncodeError, next)
}

func notFound(w http.ResponseWriter, r *http.Request) {
	EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusNotFound, Msg: "no such endpoint"}, w)
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

// decodePlaceOrder reads an order from a request: the body strictly, the idempotency key from its header.
func decodePlaceOrder(_ context.Context, r *http.Request) (any, error) {
	var n order.NewOrder
	if err := httpjson.Decode(r, MaxBodyBytes, &n); err != nil {
		return nil, err
	}
	n.IdempotencyKey = r.Header.Get(IdempotencyKeyHeader)
	return n, nil
}

// decodeListFilter reads a page's filter from the query: status, after (the cursor) and limit.
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

// changeStatusBody is the body of POST /staff/api/orders/{id}/status.
type changeStatusBody struct {
	Status order.Status `json:"status"`
}

func decodeChangeStatus(_ context.Context, r *http.Request) (any, error) {
	var b changeStatusBody
	if err := httpjson.Decode(r, MaxBodyBytes, &b); err != nil {
		return nil, err
	}
	return changeStatusRequest{ID: r.PathValue("id"), Status: b.Status}, nil
}

func encodePlaced(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(order.Created)
	w.Header().Set("Location", "/pizza/"+url.PathEscape(c.Order.ID))
	if c.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

// encodeOK answers 200 with resp as JSON.
func encodeOK(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, resp)
}

// menuResponse is the body of GET /menu: prices are integer cents of Currency.
type menuResponse struct {
	Currency string     `json:"currency"`
	Pizzas   order.Menu `json:"pizzas"`
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, menuResponse{Currency: order.Currency, Pizzas: resp.(order.Menu)})
}
