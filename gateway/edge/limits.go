// Package edge holds the protections every route of the gateway shares: per-client rate limits, caps on open
// event streams and their lifetime, the refusals they answer with, and the security headers of every page.
// It writes its refusals with the error encoder it is given (the gateway's one error table).
package edge

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/discard"
	"github.com/pizzajoint/mesh/platform/clientlimit"
)

// ErrorEncoder writes err as the answer to a request: the gateway's EncodeError.
type ErrorEncoder func(ctx context.Context, err error, w http.ResponseWriter)

// Option configures the edge's protections against abuse; without options nothing is limited.
type Option func(*Limits)

// Limits are the protections options set, read by the routes they guard.
type Limits struct {
	orders, logins *clientlimit.RateLimiter
	streams        *clientlimit.StreamLimiter
	streamLifetime time.Duration
	refused        metrics.Counter
}

// Apply returns the limits opts set; routes take their Limits from it, never a zero Limits (no refusal counter).
func Apply(opts []Option) Limits {
	o := Limits{refused: discard.NewCounter()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithOrderRateLimit limits POST /pizza per client.
func WithOrderRateLimit(l *clientlimit.RateLimiter) Option { return func(o *Limits) { o.orders = l } }

// WithLoginRateLimit limits staff sign-in attempts per client, and wrong bearer tokens on the staff routes with
// the same budget: a guess is a guess, whichever door it tries.
func WithLoginRateLimit(l *clientlimit.RateLimiter) Option { return func(o *Limits) { o.logins = l } }

// WithStreamLimits caps open event streams, and ends each one after maxLifetime (0: never); clients resume
// with Last-Event-ID, which EventSource does by itself.
func WithStreamLimits(l *clientlimit.StreamLimiter, maxLifetime time.Duration) Option {
	return func(o *Limits) { o.streams, o.streamLifetime = l, maxLifetime }
}

// WithRefusalCounter counts refused requests by the limit that refused them (label "limit": orders,
// logins, client_streams, all_streams), so operators see whether the limits fit their traffic.
func WithRefusalCounter(c metrics.Counter) Option { return func(o *Limits) { o.refused = c } }

var (
	// ErrUnauthenticated is a request without valid credentials (tracking token or staff token).
	ErrUnauthenticated = errors.New("authentication required")
	// ErrRateLimited is one client's excess (of requests or open streams): 429.
	ErrRateLimited = errors.New("rate limited")
	// ErrTooBusy is the whole gateway at capacity: 503.
	ErrTooBusy = errors.New("too busy")
)

// LimitError is a request refused to protect the service, of kind ErrRateLimited or ErrTooBusy. Both tell
// the client when to try again.
type LimitError struct {
	Kind       error
	Msg        string
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.Msg }
func (e *LimitError) Unwrap() error { return e.Kind }

// Orders limits POST /pizza: next is not reached by a client over its order rate.
func (o Limits) Orders(encodeError ErrorEncoder, next http.Handler) http.Handler {
	return rateLimited(o.orders, o.refused.With("limit", "orders"), encodeError, next)
}

// Logins limits staff sign-in attempts.
func (o Limits) Logins(encodeError ErrorEncoder, next http.Handler) http.Handler {
	return rateLimited(o.logins, o.refused.With("limit", "logins"), encodeError, next)
}

// Guesses are the sign-in limit and its refusal count, for the staff routes to charge wrong bearer tokens to.
func (o Limits) Guesses() (*clientlimit.RateLimiter, metrics.Counter) {
	return o.logins, o.refused.With("limit", "logins")
}

// rateLimited answers 429 when the client has used up its bucket, before next reads the body.
func rateLimited(l *clientlimit.RateLimiter, refused metrics.Counter, encodeError ErrorEncoder, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := l.Allow(clientlimit.ClientKey(r)); !ok {
			refused.Add(1)
			encodeError(r.Context(), &LimitError{Kind: ErrRateLimited,
				Msg: "too many requests; retry later", RetryAfter: retry}, w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AcquireStream counts a new stream of the request's client, or answers why not.
func (o Limits) AcquireStream(encodeError ErrorEncoder, w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	release, err := o.streams.Acquire(clientlimit.ClientKey(r))
	switch {
	case errors.Is(err, clientlimit.ErrClientStreams):
		o.refused.With("limit", "client_streams").Add(1)
		encodeError(r.Context(), &LimitError{Kind: ErrRateLimited,
			Msg: "too many open event streams from this client; close one", RetryAfter: 5 * time.Second}, w)
		return nil, false
	case err != nil:
		o.refused.With("limit", "all_streams").Add(1)
		encodeError(r.Context(), &LimitError{Kind: ErrTooBusy,
			Msg: "too many open event streams; retry later", RetryAfter: 5 * time.Second}, w)
		return nil, false
	}
	return release, true
}

// Lifetime is how long this stream may last: the maximum less up to a tenth, so that streams opened
// together do not all end, and reconnect, together.
func (o Limits) Lifetime() time.Duration {
	if o.streamLifetime <= 0 {
		return 0
	}
	return o.streamLifetime - rand.N(o.streamLifetime/10+1)
}
