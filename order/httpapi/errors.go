package httpapi

import (
	"context"
	"net/http"

	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// EncodeError writes err as {"error", "code", "field", "request_id", …} as the order API's error table
// (orderapi.Errors) says. Unexpected errors are not described to the client (they are logged); unavailability
// carries Retry-After.
func EncodeError(ctx context.Context, err error, w http.ResponseWriter) {
	orderapi.Errors.Write(w, err, reqid.FromContext(ctx))
}

// Outcome classifies an endpoint's error for logs and metrics by the status it is answered with.
func Outcome(err error) string { return kitmw.ByStatus(orderapi.Errors.Status)(err) }
