package order

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/platform/httpjson"
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
func MakeHTTPHandler(mux *http.ServeMux, e Endpoints) {
	opts := []httptransport.ServerOption{httptransport.ServerErrorEncoder(EncodeError)}
	mux.Handle("GET /menu", httptransport.NewServer(e.MenuEndpoint, decodeNothing, encodeMenu, opts...))
	mux.Handle("POST /orders", httptransport.NewServer(e.CreateOrderEndpoint, DecodeNewOrder, EncodeCreated, opts...))
	mux.Handle("GET /orders/{id}", httptransport.NewServer(e.GetOrderEndpoint, decodeGetOrder, EncodeOK, opts...))
	mux.Handle("GET /orders", httptransport.NewServer(e.ListOrdersEndpoint, DecodeListFilter, EncodeOK, opts...))
	mux.Handle("POST /orders/{id}/status", httptransport.NewServer(e.ChangeStatusEndpoint, decodeChangeStatus, EncodeOK, opts...))
}

func decodeNothing(context.Context, *http.Request) (any, error) { return nil, nil }

// DecodeNewOrder reads a NewOrder from a request: the body strictly, the idempotency key from its header.
func DecodeNewOrder(_ context.Context, r *http.Request) (any, error) {
	var n NewOrder
	if err := httpjson.Decode(r, MaxBodyBytes, &n); err != nil {
		return nil, err
	}
	n.IdempotencyKey = r.Header.Get(IdempotencyKeyHeader)
	return n, nil
}

func decodeGetOrder(_ context.Context, r *http.Request) (any, error) {
	return getOrderRequest{ID: r.PathValue("id")}, nil
}

// DecodeListFilter reads a ListFilter from the query: status, after (the cursor) and limit.
func DecodeListFilter(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := ListFilter{Status: Status(q.Get("status")), After: q.Get("after")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, &ValidationError{Field: "limit", Reason: "must be a whole number"}
		}
		f.Limit = n
	}
	return f, nil
}

func decodeChangeStatus(_ context.Context, r *http.Request) (any, error) {
	var req changeStatusRequest
	if err := httpjson.Decode(r, MaxBodyBytes, &req); err != nil {
		return nil, err
	}
	req.ID = r.PathValue("id")
	return req, nil
}

type menuResponse struct {
	Pizzas Menu `json:"pizzas"`
}

func encodeMenu(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, menuResponse{Pizzas: resp.(Menu)})
}

// EncodeCreated answers 201 with the order and its Location; a replayed idempotent request says so in a header.
func EncodeCreated(_ context.Context, w http.ResponseWriter, resp any) error {
	c := resp.(Created)
	w.Header().Set("Location", "/orders/"+url.PathEscape(c.Order.ID))
	if c.Replayed {
		w.Header().Set(ReplayedHeader, "true")
	}
	return httpjson.Write(w, http.StatusCreated, c.Order)
}

// EncodeOK answers 200 with resp as JSON.
func EncodeOK(_ context.Context, w http.ResponseWriter, resp any) error {
	return httpjson.Write(w, http.StatusOK, resp)
}

// Error codes carried in error bodies, so clients (and this package's own client) can tell errors apart.
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
		invalid *ValidationError
		illegal *IllegalTransitionError
	)
	switch {
	case errors.As(err, &body):
		return body.Status, CodeInvalid
	case errors.As(err, &invalid):
		return http.StatusUnprocessableEntity, CodeInvalid
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, CodeNotFound
	case errors.As(err, &illegal):
		return http.StatusConflict, CodeIllegalTransition
	case errors.Is(err, ErrIdempotencyMismatch):
		return http.StatusUnprocessableEntity, CodeIdempotencyMismatch
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
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
		invalid *ValidationError
		illegal *IllegalTransitionError
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

// decodeErrorBody turns an error response back into the typed error it was made from.
func decodeErrorBody(resp *http.Response) error {
	var b httpjson.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		b.Error = resp.Status
	}
	switch {
	case b.Code == CodeInvalid:
		return &ValidationError{Field: b.Field, Reason: b.Error}
	case b.Code == CodeNotFound:
		return ErrNotFound
	case b.Code == CodeIllegalTransition:
		return &IllegalTransitionError{From: Status(b.From), To: Status(b.To)}
	case b.Code == CodeIdempotencyMismatch:
		return ErrIdempotencyMismatch
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
func (e *remoteError) Unwrap() error { return ErrUnavailable }
