// Package orderclient is the go-kit HTTP client of the order service: an order.Service over the network,
// which the gateway uses through its sidecar. Error answers become the domain errors they were made from, as
// the order service's error table (order/httpapi) says.
package orderclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/httpapi"
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
	opts := []httptransport.ClientOption{
		httptransport.SetClient(c),
		httptransport.ClientBefore(reqid.ToHTTPRequest),
	}
	client := func(method, path string, enc httptransport.EncodeRequestFunc, dec httptransport.DecodeResponseFunc) endpoint.Endpoint {
		return unavailableOnTransportError(httptransport.NewClient(method, u.JoinPath(path), enc, dec, opts...).Endpoint())
	}
	return order.Endpoints{
		MenuEndpoint:         client(http.MethodGet, "/menu", encodeNoBody, decodeMenuResponse),
		CreateOrderEndpoint:  client(http.MethodPost, "/orders", encodeCreateOrderRequest, decodeCreatedResponse),
		GetOrderEndpoint:     client(http.MethodGet, "/orders", encodeGetOrderRequest, decodeInto[order.Order]),
		ListOrdersEndpoint:   client(http.MethodGet, "/orders", encodeListOrdersRequest, decodeInto[order.Page]),
		ChangeStatusEndpoint: client(http.MethodPost, "/orders", encodeChangeStatusRequest, decodeInto[order.Order]),
	}, nil
}

// unavailableOnTransportError turns anything that is not an answer of the order service (refused connection,
// reset, deadline, cut-off body) into ErrUnavailable, so callers see one kind of "try later".
func unavailableOnTransportError(next endpoint.Endpoint) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		resp, err := next(ctx, req)
		if err == nil || httpapi.IsAnswer(err) {
			return resp, err
		}
		return nil, fmt.Errorf("%w: %w", order.ErrUnavailable, err)
	}
}

func encodeNoBody(context.Context, *http.Request, any) error { return nil }

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
	if n.IdempotencyKey != "" {
		r.Header.Set(httpapi.IdempotencyKeyHeader, n.IdempotencyKey)
	}
	return setJSONBody(r, n)
}

func encodeGetOrderRequest(_ context.Context, r *http.Request, req any) error {
	r.URL = r.URL.JoinPath(req.(order.GetOrderRequest).ID)
	return nil
}

func encodeListOrdersRequest(_ context.Context, r *http.Request, req any) error {
	f := req.(order.ListFilter)
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
	r.URL = r.URL.JoinPath(c.ID, "status")
	return setJSONBody(r, httpapi.ChangeStatusBody{Status: c.Status})
}

func decodeMenuResponse(ctx context.Context, resp *http.Response) (any, error) {
	m, err := decodeInto[httpapi.MenuResponse](ctx, resp)
	if err != nil {
		return nil, err
	}
	return m.(httpapi.MenuResponse).Pizzas, nil
}

func decodeCreatedResponse(ctx context.Context, resp *http.Response) (any, error) {
	o, err := decodeInto[order.Order](ctx, resp)
	if err != nil {
		return nil, err
	}
	return order.Created{Order: o.(order.Order), Replayed: resp.Header.Get(httpapi.ReplayedHeader) == "true"}, nil
}

// decodeInto reads a 2xx JSON body into a T, or an error body into its typed error.
func decodeInto[T any](_ context.Context, resp *http.Response) (any, error) {
	// Read to the end so the keep-alive connection goes back to the pool.
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) }()
	if resp.StatusCode >= 300 {
		return nil, httpapi.DecodeError(resp)
	}
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("decode %T from order service: %w", v, err)
	}
	return v, nil
}
