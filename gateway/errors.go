package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/gateway/stream"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/httpjson"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// Codes carried in the gateway's own error bodies. The order domain's errors keep the order API's codes
// (orderapi.Code…), and so do requests the gateway cannot read (orderapi.CodeInvalid).
const (
	CodeUnauthenticated = "unauthenticated"
	CodeRateLimited     = "rate_limited"
	CodeTooBusy         = "too_busy"
)

// errorTable is the gateway's one map of errors to answers: the edge's own (credentials, limits, requests it
// cannot read) and the order domain's, which the gateway passes on to its clients with the order API's own
// rows (orderapi.DomainErrors). EncodeError and Outcome read it. An error no row matches is a 500 that does
// not describe it (it is logged instead).
var errorTable = httpjson.ErrorTable{
	Kinds: append([]httpjson.ErrorKind{
		unauthenticated(ErrUnauthenticated, http.StatusUnauthorized, CodeUnauthenticated),
		limit(edge.ErrRateLimited, http.StatusTooManyRequests, CodeRateLimited),
		limit(edge.ErrTooBusy, http.StatusServiceUnavailable, CodeTooBusy),
		// Staff routes of a gateway without staff sign-in: kept with the code it has always been answered with.
		httpjson.Sentinel(staff.ErrNotConfigured, http.StatusServiceUnavailable, orderapi.CodeInvalid),
		httpjson.RequestErrors(orderapi.CodeInvalid),
		// A stream order refused, relayed to the client as it came: never answered here, its status is its outcome.
		httpjson.Typed(http.StatusBadGateway, orderapi.CodeUnavailable, func(e *stream.RelayedError, a *httpjson.ErrorAnswer) { a.Status = e.Status }, nil),
	}, orderapi.DomainErrors()...), // the order domain's errors, passed on
	Unknown: httpjson.ErrorKind{Status: http.StatusInternalServerError, Code: orderapi.CodeInternal,
		Describe: func(_ error, a *httpjson.ErrorAnswer) { a.Body.Error = "internal error" }},
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

// limit answers an *edge.LimitError of kind err, telling the client when to try again.
func limit(err error, status int, code string) httpjson.ErrorKind {
	k := httpjson.Sentinel(err, status, code)
	k.Describe = func(err error, a *httpjson.ErrorAnswer) {
		var retry time.Duration
		if e, ok := errors.AsType[*edge.LimitError](err); ok {
			retry = e.RetryAfter
		}
		secs := int((retry + time.Second - 1) / time.Second) // whole seconds, rounded up
		a.Header.Set("Retry-After", strconv.Itoa(max(secs, 1)))
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
