package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// Codes carried in the gateway's error bodies.
const (
	CodeInvalid             = "invalid_request"
	CodeNotFound            = "not_found"
	CodeIllegalTransition   = "illegal_transition"
	CodeIdempotencyMismatch = "idempotency_key_reused"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
	CodeUnauthenticated     = "unauthenticated"
	CodeRateLimited         = "rate_limited"
	CodeTooBusy             = "too_busy"
)

// errorTable is the gateway's one map of errors to answers: the edge's own (credentials, limits, requests it
// cannot read) and the order domain's, which the gateway passes on to its clients. EncodeError and Outcome
// read it. An error no row matches is a 500 that does not describe it (it is logged instead).
var errorTable = httpjson.ErrorTable{
	Kinds: []httpjson.ErrorKind{
		unauthenticated(ErrUnauthenticated, http.StatusUnauthorized, CodeUnauthenticated),
		limit(ErrRateLimited, http.StatusTooManyRequests, CodeRateLimited),
		limit(ErrTooBusy, http.StatusServiceUnavailable, CodeTooBusy),
		// Staff routes of a gateway without staff sign-in: kept with the code it has always been answered with.
		httpjson.Sentinel(errStaffNotConfigured, http.StatusServiceUnavailable, CodeInvalid),
		httpjson.RequestErrors(CodeInvalid),
		// A stream order refused, relayed to the client as it came: never answered here, its status is its outcome.
		httpjson.Typed(http.StatusBadGateway, CodeUnavailable, func(e *relayedError, a *httpjson.ErrorAnswer) { a.Status = e.status }, nil),

		// The order domain's errors, passed on.
		httpjson.Typed(http.StatusUnprocessableEntity, CodeInvalid, describeInvalid, nil),
		httpjson.Sentinel(order.ErrNotFound, http.StatusNotFound, CodeNotFound),
		httpjson.Typed(http.StatusConflict, CodeIllegalTransition, describeIllegalTransition, nil),
		httpjson.Sentinel(order.ErrIdempotencyMismatch, http.StatusUnprocessableEntity, CodeIdempotencyMismatch),
		unavailable(order.ErrUnavailable),
		unavailable(context.DeadlineExceeded),
	},
	Unknown: httpjson.ErrorKind{Status: http.StatusInternalServerError, Code: CodeInternal,
		Describe: func(_ error, a *httpjson.ErrorAnswer) { a.Body.Error = "internal error" }},
}

func describeInvalid(e *order.ValidationError, a *httpjson.ErrorAnswer) {
	a.Body.Field, a.Body.Error = e.Field, e.Reason
}

func describeIllegalTransition(e *order.IllegalTransitionError, a *httpjson.ErrorAnswer) {
	a.Body.From, a.Body.To = string(e.From), string(e.To)
}

// unauthenticated says which credentials the client lacks, without saying why those it sent failed.
func unauthenticated(err error, status int, code string) httpjson.ErrorKind {
	k := httpjson.Sentinel(err, status, code)
	k.Describe = func(_ error, a *httpjson.ErrorAnswer) {
		a.Body.Error = "missing or invalid credentials"
		a.Header.Set("WWW-Authenticate", `Bearer realm="pizza"`)
	}
	return k
}

// limit answers a *LimitError of kind err, telling the client when to try again.
func limit(err error, status int, code string) httpjson.ErrorKind {
	k := httpjson.Sentinel(err, status, code)
	k.Describe = func(err error, a *httpjson.ErrorAnswer) {
		var retry time.Duration
		if e, ok := errors.AsType[*LimitError](err); ok {
			retry = e.RetryAfter
		}
		secs := int((retry + time.Second - 1) / time.Second) // whole seconds, rounded up
		a.Header.Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	return k
}

// unavailable tells the client to come back: the order service (or what it depends on) cannot answer now.
func unavailable(err error) httpjson.ErrorKind {
	k := httpjson.Sentinel(err, http.StatusServiceUnavailable, CodeUnavailable)
	k.Describe = func(_ error, a *httpjson.ErrorAnswer) {
		a.Body.Error = "the order service is unavailable; retry later"
		a.Header.Set("Retry-After", "1")
	}
	return k
}

// EncodeError writes err as JSON ({"error", "code", "field", "request_id", …}) as the error table says.
func EncodeError(ctx context.Context, err error, w http.ResponseWriter) {
	errorTable.Write(w, err, reqid.FromContext(ctx))
}

// Outcome classifies an endpoint's error for logs and metrics by the status it is answered with: a missing
// token or a bad order is the client's, an order service that does not answer is ours.
func Outcome(err error) string { return kitmw.ByStatus(errorTable.Status)(err) }
