// Package upstream holds the client side of a call through the local sidecar: a RoundTripper that retries a
// request whose connection failed before any response arrived, when sending it again cannot do harm.
package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// IdempotencyKeyHeader marks a POST the server deduplicates: sending it twice creates one order. (The same
// header as order/orderapi.IdempotencyKeyHeader; platform packages do not import services.)
const IdempotencyKeyHeader = "Idempotency-Key"

// Retry is an http.RoundTripper that sends a request again, on a fresh connection, when the attempt failed
// before any response byte (a sidecar restarting, an upstream instance gone, a reset keep-alive connection):
//   - always when the connection could not be opened (nothing was sent);
//   - for GET and HEAD, and for requests carrying an Idempotency-Key, after any failure before the response.
//
// Attempts are spaced by a doubling backoff and bounded by the request's context deadline.
type Retry struct {
	Next     http.RoundTripper
	Attempts int           // total attempts, at least 1
	Backoff  time.Duration // before the second attempt; doubles after each
	Logger   *slog.Logger
	// OnRetry, if set, is called before each retry (for a metric).
	OnRetry func(r *http.Request, err error)
}

// RoundTrip implements http.RoundTripper.
func (t *Retry) RoundTrip(r *http.Request) (*http.Response, error) {
	wait := t.Backoff
	for attempt := 1; ; attempt++ {
		resp, err := t.Next.RoundTrip(r)
		if err == nil || attempt >= t.Attempts || !retryable(r, err) || r.Context().Err() != nil {
			return resp, err
		}
		if r.Body != nil && r.Body != http.NoBody {
			if r.GetBody == nil {
				return resp, err
			}
			body, gerr := r.GetBody()
			if gerr != nil {
				return resp, err
			}
			r = r.Clone(r.Context())
			r.Body = body
		}
		if t.OnRetry != nil {
			t.OnRetry(r, err)
		}
		if t.Logger != nil {
			t.Logger.Debug("upstream attempt failed before a response; retrying", "method", r.Method,
				"path", r.URL.Path, "attempt", attempt, "err", err)
		}
		if !sleep(r.Context(), wait) {
			return nil, err
		}
		wait *= 2
		// The failure may have come from an idle connection the sidecar already closed: start afresh.
		t.CloseIdleConnections()
	}
}

// CloseIdleConnections passes through to the wrapped transport.
func (t *Retry) CloseIdleConnections() {
	if tr, ok := t.Next.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
}

func retryable(r *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // the request never left
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case r.Method == http.MethodGet, r.Method == http.MethodHead:
		return true
	default:
		return r.Header.Get(IdempotencyKeyHeader) != ""
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
