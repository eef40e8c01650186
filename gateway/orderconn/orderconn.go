// Package orderconn is the gateway's way to the order service: through the local Connect sidecar's upstream
// port, on a keep-alive pool whose every step is bounded, with calls that failed before any answer sent again
// when that cannot create a second order.
package orderconn

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderclient"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/tracing"
	sidecar "github.com/pizzajoint/mesh/platform/upstream"
)

// Config is the order service as the gateway reaches it. Its field names and tags are the environment's
// (GATEWAY_ORDER_…) and the flags' names: renaming one breaks deployments.
type Config struct {
	// URL is the order service as the gateway reaches it: the sidecar's local upstream.
	URL string `conf:"default:http://127.0.0.1:9191"`
	// Timeout bounds every call to the order service, connecting included.
	Timeout time.Duration `conf:"default:5s"`
	// MaxConns bounds connections to the upstream; idle ones are kept for reuse.
	MaxConns int `conf:"default:64"`
}

// Conn is the gateway's connection to order.
type Conn struct {
	Orders order.Service // the order API's client, retrying through Transport
	URL    *url.URL      // where order is reached (the stream relay's base)
	// Transport is the pool both the client and the stream relay use; the relay does not retry.
	Transport *http.Transport
}

// New returns the connection to order that c describes.
func New(c Config, logger *slog.Logger) (*Conn, error) {
	upstream := Transport(c.MaxConns, c.Timeout)
	// A sidecar restarting (a token rotation) or an order instance going away drops connections before any
	// answer: such a call is sent again on a fresh connection when that cannot create a second order.
	// A client span per attempt, inside the retries: a call retried through a rotation shows each try.
	retrying := &sidecar.Retry{Next: tracing.Client(upstream), Attempts: 6, Backoff: 50 * time.Millisecond, Logger: logger}
	orders, err := orderclient.New(c.URL, &http.Client{Transport: retrying})
	if err != nil {
		return nil, err
	}
	orderURL, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	return &Conn{Orders: orders, URL: orderURL, Transport: upstream}, nil
}

// Transport keeps connections to the sidecar alive and bounds how long any step may take. There is no
// overall timeout: each call's context carries its deadline.
func Transport(maxConns int, timeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: min(timeout, 2*time.Second), KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       maxConns,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     false,
	}
}

// UpstreamPort is the local port the sidecar's upstream "order" listens on: URL's, which must name one.
func (c Config) UpstreamPort() (int, error) {
	up, err := consulreg.UpstreamAt("order", c.URL)
	if err != nil {
		return 0, fmt.Errorf("order URL: %w", err)
	}
	return up.LocalPort, nil
}
