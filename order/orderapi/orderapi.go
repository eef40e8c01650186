// Package orderapi is the order service's HTTP API as both sides agree on it: its routes, headers and bodies,
// its error codes and the one error table that the server's encoder (order/httpapi), the client's decoder
// (order/orderclient) and the log and metric outcome read. The gateway passes the order domain's errors on
// with the same rows. It holds no handler and no client, so a caller imports it and never the server.
package orderapi

import (
	"net/url"
	"strings"

	"github.com/pizzajoint/mesh/order"
)

// Route is one endpoint of the order API: its method and its path pattern, where {id} stands for an order's
// ID. String is the pattern http.ServeMux mounts it at; Path is the path a client calls.
type Route struct {
	Method, Pattern string
}

func (r Route) String() string { return r.Method + " " + r.Pattern }

// Path is the route's path for the order id, which is escaped as one path segment.
func (r Route) Path(id string) string {
	return strings.Replace(r.Pattern, "{id}", url.PathEscape(id), 1)
}

// The order API's routes.
var (
	RouteMenu         = Route{"GET", "/menu"}                // the menu (MenuResponse)
	RouteCreateOrder  = Route{"POST", "/orders"}             // create an order (Idempotency-Key header honoured)
	RouteGetOrder     = Route{"GET", "/orders/{id}"}         // one order
	RouteListOrders   = Route{"GET", "/orders"}              // ?status=&after=&limit=: a page of orders, oldest first
	RouteChangeStatus = Route{"POST", "/orders/{id}/status"} // ChangeStatusBody: move an order along its lifecycle
	RouteOrderEvents  = Route{"GET", "/orders/{id}/events"}  // one order's events (SSE)
	RouteEvents       = Route{"GET", "/events"}              // every order's events (SSE, staff)
)

// Headers of the order API.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// ChangeStatusBody is the body of POST /orders/{id}/status.
type ChangeStatusBody struct {
	Status order.Status `json:"status"`
}

// MenuResponse is the body of GET /menu.
type MenuResponse struct {
	Pizzas order.Menu `json:"pizzas"`
}
