// Package orderclient is the go-kit HTTP client of the order service: an order.Service over the network,
// which the gateway uses through its sidecar. It speaks the order API as order/orderapi defines it (routes,
// headers, bodies, JSON v2 like the server), and error answers become the domain errors they were made from,
// as the API's error table says.
package orderclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderapi"
	"github.com/pizzajoint/mesh/platform/reqid"
)

// New returns an order.Service that calls the order service at baseURL (in the mesh: the local sidecar
// upstream) through c. c's transport should keep connections alive; callers bound each call with a deadline.
// Failures to reach the service, or its own 5xx answers, come back as errors wrapping order.ErrUnavailable.
func New(baseURL string, c *http.Client) (order.Service, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("order service URL %q must be absolute, like http://127.0.0.1:9191", baseURL)
	}
	if u.Path == "" {
		u.Path = "/" // so the routes' paths join under it as absolute paths
	}
	opts := []httptransport.ClientOption{
		httptransport.SetClient(c),
		httptransport.ClientBefore(reqid.ToHTTPRequest),
	}
	client := func(route orderapi.Route, enc httptransport.EncodeRequestFunc, dec httptransport.DecodeResponseFunc) endpoint.Endpoint {
		return unavailableOnTransportError(httptransport.NewClient(route.Method, u, enc, dec, opts...).Endpoint())
	}
	return order.Endpoints{
		MenuEndpoint:         client(orderapi.RouteMenu, encodeMenuRequest, decodeMenuResponse),
		CreateOrderEndpoint:  client(orderapi.RouteCreateOrder, encodeCreateOrderRequest, decodeCreatedResponse),
		GetOrderEndpoint:     client(orderapi.RouteGetOrder, encodeGetOrderRequest, decodeInto[order.Order]),
		ListOrdersEndpoint:   client(orderapi.RouteListOrders, encodeListOrdersRequest, decodeInto[order.Page]),
		ChangeStatusEndpoint: client(orderapi.RouteChangeStatus, encodeChangeStatusRequest, decodeInto[order.Order]),
	}, nil
}

// at points r at route's path for the order id ("" for routes without one), under the base URL.
func at(r *http.Request, route orderapi.Route, id string) {
	r.URL = r.URL.JoinPath(route.Path(id))
}

// unavailableOnTransportError turns anything that is not an answer of the order service (refused connection,
// reset, deadline, cut-off body) into ErrUnavailable, so callers see one kind of "try later".
func unavailableOnTransportError(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		resp, err := next(ctx, req)
		if err == nil || orderapi.IsAnswer(err) {
			return resp, err
		}
		return nil, fmt.Errorf("%w: %w", order.ErrUnavailable, err)
	}
}

func encodeMenuRequest(_ context.Context, r *http.Request, _ any) error {
	at(r, orderapi.RouteMenu, "")
	return nil
}

// setJSONBody sends v as the body, in JSON v2 as the server reads it.
func setJSONBody(r *http.Request, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = int64(len(b))
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return nil
}

func encodeCreateOrderRequest(_ context.Context, r *http.Request, req any) error {
	n := req.(order.NewOrder)
	at(r, orderapi.RouteCreateOrder, "")
	if n.IdempotencyKey != "" {
		r.Header.Set(orderapi.IdempotencyKeyHeader, n.IdempotencyKey)
	}
	return setJSONBody(r, n)
}

func encodeGetOrderRequest(_ context.Context, r *http.Request, req any) error {
	at(r, orderapi.RouteGetOrder, req.(order.GetOrderRequest).ID)
	return nil
}

func encodeListOrdersRequest(_ context.Context, r *http.Request, req any) error {
	f := req.(order.ListFilter)
	at(r, orderapi.RouteListOrders, "")
	q := url.Values{}
	if f.Status != "" {
		q.Set("status", string(f.Status))
	}
	if f.After != "" {
		q.Set("after", f.After)
	}
	if f.Limit != 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	r.URL.RawQuery = q.Encode()
	return nil
}

func encodeChangeStatusRequest(_ context.Context, r *http.Request, req any) error {
	c := req.(order.ChangeStatusRequest)
	at(r, orderapi.RouteChangeStatus, c.ID)
	return setJSONBody(r, orderapi.ChangeStatusBody{Status: c.Status})
}

func decodeMenuResponse(ctx context.Context, resp *http.Response) (any, error) {
	m, err := decodeInto[orderapi.MenuResponse](ctx, resp)
	if err != nil {
		return nil, err
	}
	return m.(orderapi.MenuResponse).Pizzas, nil
}

func decodeCreatedResponse(ctx context.Context, resp *http.Response) (any, error) {
	o, err := decodeInto[order.Order](ctx, resp)
	if err != nil {
		return nil, err
	}
	return order.Created{Order: o.(order.Order), Replayed: resp.Header.Get(orderapi.ReplayedHeader) == "true"}, nil
}

// decodeInto reads a 2xx JSON body into a T, or an error body into its typed error.
func decodeInto[T any](_ context.Context, resp *http.Response) (any, error) {
	// Read to the end so the keep-alive connection goes back to the pool.
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) }()
	if resp.StatusCode >= 300 {
		return nil, orderapi.DecodeError(resp)
	}
	var v T
	if err := orderapi.DecodeBody(resp, &v); err != nil {
		return nil, fmt.Errorf("decode %T from order service: %w", v, err)
	}
	return v, nil
}
