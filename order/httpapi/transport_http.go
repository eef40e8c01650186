// Package httpapi is the order service's HTTP transport: handlers, request decoders and response encoders,
// the event streams, and the error table that the server's encoder, orderclient's decoder and the log and
// metric outcome share.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
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

// Error codes carried in error bodies, so clients (and orderclient) can tell errors apart.
const (
	CodeInvalid             = "invalid_request"
	CodeNotFound            = "not_found"
	CodeIllegalTransition   = "illegal_transition"
	CodeIdempotencyMismatch = "idempotency_key_reused"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// ErrorStatus maps an error to its HTTP status and code: the one place where errors become statuses.
func ErrorStatus(err error) (int, string) {
	var (
		body    *httpjson.RequestError
		invalid *order.ValidationError
		illegal *order.IllegalTransitionError
	)
	switch {
	case errors.As(err, &body):
		return body.Status, CodeInvalid
	case errors.As(err, &invalid):
		return http.StatusUnprocessableEntity, CodeInvalid
	case errors.Is(err, order.ErrNotFound):
		return http.StatusNotFound, CodeNotFound
	case errors.As(err, &illegal):
		return http.StatusConflict, CodeIllegalTransition
	case errors.Is(err, order.ErrIdempotencyMismatch):
		return http.StatusUnprocessableEntity, CodeIdempotencyMismatch
	case errors.Is(err, order.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable
	default:
		return http.StatusInternalServerError, CodeInternal
	}
}

// EncodeError writes err as {"error", "code", "field", "request_id"}. Unexpected errors are not described to
// the client (they are logged); unavailability carries Retry-After.
func EncodeError(ctx context.Context, err error, w http.ResponseWriter) {
	status, code := ErrorStatus(err)
	body := httpjson.ErrorBody{Error: err.Error(), Code: code, RequestID: reqid.FromContext(ctx)}
	var (
		reqErr  *httpjson.RequestError
		invalid *order.ValidationError
		illegal *order.IllegalTransitionError
	)
	switch {
	case errors.As(err, &reqErr):
		body.Field, body.Error = reqErr.Field, reqErr.Msg
		if reqErr.Status == http.StatusRequestEntityTooLarge {
			// The refused body may still be on its way: close after answering, so it is never read as the
			// next request and the client sees the 413 rather than a reset mid-upload.
			w.Header().Set("Connection", "close")
		}
	case errors.As(err, &invalid):
		body.Field, body.Error = invalid.Field, invalid.Reason
	case errors.As(err, &illegal):
		body.From, body.To = string(illegal.From), string(illegal.To)
	case code == CodeUnavailable:
		body.Error = "the order service is unavailable; retry later"
		w.Header().Set("Retry-After", "1")
	case code == CodeInternal:
		body.Error = "internal error"
	}
	_ = httpjson.Write(w, status, body)
}

// DecodeError turns an error response back into the typed error it was made from.
func DecodeError(resp *http.Response) error {
	var b httpjson.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		b.Error = resp.Status
	}
	switch {
	case b.Code == CodeInvalid:
		return &order.ValidationError{Field: b.Field, Reason: b.Error}
	case b.Code == CodeNotFound:
		return order.ErrNotFound
	case b.Code == CodeIllegalTransition:
		return &order.IllegalTransitionError{From: order.Status(b.From), To: order.Status(b.To)}
	case b.Code == CodeIdempotencyMismatch:
		return order.ErrIdempotencyMismatch
	default:
		return &remoteError{status: resp.StatusCode, msg: b.Error}
	}
}

// remoteError is a server-side failure of the order service: to the caller it is unavailability.
type remoteError struct {
	status int
	msg    string
}

func (e *remoteError) Error() string {
	return "order service answered " + strconv.Itoa(e.status) + ": " + e.msg
}
func (e *remoteError) Unwrap() error { return order.ErrUnavailable }

// Outcome classifies an endpoint's error for logs and metrics (see kitmw.Classify).
func Outcome(err error) string {
	if err == nil {
		return kitmw.OutcomeOK
	}
	if status, _ := ErrorStatus(err); status < 500 {
		return kitmw.OutcomeClientError
	}
	return kitmw.OutcomeServerError
}
