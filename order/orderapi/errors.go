package orderapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// Error codes carried in error bodies, so clients (and orderclient) can tell errors apart.
const (
	CodeInvalid             = "invalid_request"
	CodeNotFound            = "not_found"
	CodeIllegalTransition   = "illegal_transition"
	CodeIdempotencyMismatch = "idempotency_key_reused"
	CodeTooSlow             = "too_slow"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
)

// Errors is the one map of the order API's errors to HTTP: the server's encoder, the client's decoder
// (DecodeError) and the log and metric outcome all read it. A new domain error is one row of DomainErrors.
// An error no row matches is a 500 that does not describe it (it is logged instead).
var Errors = httpjson.ErrorTable{
	Kinds: append(append([]httpjson.ErrorKind{httpjson.RequestErrors(CodeInvalid)}, DomainErrors()...),
		// Ends a stream that has begun, so it is never answered; its status makes it the client's doing.
		httpjson.Sentinel(order.ErrSlowSubscriber, http.StatusTooManyRequests, CodeTooSlow)),
	Unknown: httpjson.ErrorKind{Status: http.StatusInternalServerError, Code: CodeInternal,
		Describe: func(_ error, a *httpjson.ErrorAnswer) { a.Body.Error = "internal error" },
		Decode:   decodeRemote},
}

// DomainErrors are the rows of the order domain's errors, as the order service answers them and the gateway
// passes them on to its own clients.
func DomainErrors() []httpjson.ErrorKind {
	return []httpjson.ErrorKind{
		httpjson.Typed(http.StatusUnprocessableEntity, CodeInvalid, describeInvalid, decodeInvalid),
		httpjson.Sentinel(order.ErrNotFound, http.StatusNotFound, CodeNotFound),
		httpjson.Typed(http.StatusConflict, CodeIllegalTransition, describeIllegalTransition, decodeIllegalTransition),
		httpjson.Sentinel(order.ErrIdempotencyMismatch, http.StatusUnprocessableEntity, CodeIdempotencyMismatch),
		unavailable(order.ErrUnavailable, decodeRemote),
		unavailable(context.DeadlineExceeded, nil), // a deadline of the answering side; a client makes ErrUnavailable of it
	}
}

func describeInvalid(e *order.ValidationError, a *httpjson.ErrorAnswer) {
	a.Body.Field, a.Body.Error = e.Field, e.Reason
}

// decodeInvalid makes a ValidationError of an invalid_request answer, also of a 400 (a body the order
// service could not read): to the caller both are bad input.
func decodeInvalid(a httpjson.ErrorAnswer) error {
	return &order.ValidationError{Field: a.Body.Field, Reason: a.Body.Error}
}

func describeIllegalTransition(e *order.IllegalTransitionError, a *httpjson.ErrorAnswer) {
	a.Body.From, a.Body.To = string(e.From), string(e.To)
}

func decodeIllegalTransition(a httpjson.ErrorAnswer) error {
	return &order.IllegalTransitionError{From: order.Status(a.Body.From), To: order.Status(a.Body.To)}
}

// unavailable tells the client to come back later.
func unavailable(err error, decode func(httpjson.ErrorAnswer) error) httpjson.ErrorKind {
	k := httpjson.Sentinel(err, http.StatusServiceUnavailable, CodeUnavailable)
	k.Describe = func(_ error, a *httpjson.ErrorAnswer) {
		a.Body.Error = "the order service is unavailable; retry later"
		a.Header.Set("Retry-After", "1")
	}
	k.Decode = decode
	return k
}

// decodeRemote makes a remoteError of a failure on the order service's side, or of an answer nobody here
// knows: to the caller it is unavailability.
func decodeRemote(a httpjson.ErrorAnswer) error {
	return &remoteError{Status: a.Status, Msg: a.Body.Error}
}

// remoteError is a failure of the order service as it answered it; it is ErrUnavailable to callers.
type remoteError struct {
	Status int
	Msg    string
}

func (e *remoteError) Error() string {
	return "order service answered " + strconv.Itoa(e.Status) + ": " + e.Msg
}
func (e *remoteError) Unwrap() error { return order.ErrUnavailable }

// DecodeError turns an error response of the order service back into the domain error it was made from;
// what it cannot place is ErrUnavailable.
func DecodeError(resp *http.Response) error {
	var b httpjson.ErrorBody
	if err := DecodeBody(resp, &b); err != nil {
		b.Error = resp.Status
	}
	return Errors.Decode(httpjson.ErrorAnswer{Status: resp.StatusCode, Header: resp.Header, Body: b})
}

// DecodeBody reads the first JSON value of an answer's body into v with JSON v2, as the server's decoder
// reads requests (case-sensitive names, no duplicates, valid UTF-8). Unknown names are ignored, so the
// server may add fields. A body that is not one whole JSON value leaves v as it was.
func DecodeBody(resp *http.Response, v any) error {
	val, err := jsontext.NewDecoder(resp.Body).ReadValue()
	if err != nil {
		return err
	}
	return json.Unmarshal(val, v)
}

// IsAnswer reports whether err is one DecodeError makes: an answer of the order service, as opposed to a
// failure to reach it.
func IsAnswer(err error) bool { return Errors.Decoded(err) }
