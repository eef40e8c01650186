package gateway

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/discard"
	"github.com/pizzajoint/mesh/platform/clientlimit"
)

// Option configures the edge's protections against abuse; without options nothing is limited.
type Option func(*options)

type options struct {
	orders, logins *clientlimit.RateLimiter
	streams        *clientlimit.StreamLimiter
	streamLifetime time.Duration
	refused        metrics.Counter
}

func applyOptions(opts []Option) options {
	o := options{refused: discard.NewCounter()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithOrderRateLimit limits POST /pizza per client.
func WithOrderRateLimit(l *clientlimit.RateLimiter) Option { return func(o *options) { o.orders = l } }

// WithLoginRateLimit limits staff sign-in attempts per client, and wrong bearer tokens on the staff routes with
// the same budget: a guess is a guess, whichever door it tries.
func WithLoginRateLimit(l *clientlimit.RateLimiter) Option { return func(o *options) { o.logins = l } }

// WithStreamLimits caps open event streams, and ends each one after maxLifetime (0: never); clients resume
// with Last-Event-ID, which EventSource does by itself.
func WithStreamLimits(l *clientlimit.StreamLimiter, maxLifetime time.Duration) Option {
	return func(o *options) { o.streams, o.streamLifetime = l, maxLifetime }
}

// WithRefusalCounter counts refused requests by the limit that refused them (label "limit": orders,
// logins, client_streams, all_streams), so operators see whether the limits fit their traffic.
func WithRefusalCounter(c metrics.Counter) Option { return func(o *options) { o.refused = c } }

var (
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

// rateLimited answers 429 when the client has used up its bucket, before next reads the body.
func rateLimited(l *clientlimit.RateLimiter, refused metrics.Counter, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := l.Allow(clientlimit.ClientKey(r)); !ok {
			refused.Add(1)
			EncodeError(r.Context(), &LimitError{Kind: ErrRateLimited,
				Msg: "too many requests; retry later", RetryAfter: retry}, w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireStaff lets signed-in staff through to next; wrong bearer tokens draw on the sign-in limit.
func (o options) requireStaff(a *StaffAuth, next http.Handler) http.Handler {
	return a.requireLimited(o.logins, o.refused.With("limit", "logins"), next)
}

// acquireStream counts a new stream of the request's client, or answers why not.
func (o options) acquireStream(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	release, err := o.streams.Acquire(clientlimit.ClientKey(r))
	switch {
	case errors.Is(err, clientlimit.ErrClientStreams):
		o.refused.With("limit", "client_streams").Add(1)
		EncodeError(r.Context(), &LimitError{Kind: ErrRateLimited,
			Msg: "too many open event streams from this client; close one", RetryAfter: 5 * time.Second}, w)
		return nil, false
	case err != nil:
		o.refused.With("limit", "all_streams").Add(1)
		EncodeError(r.Context(), &LimitError{Kind: ErrTooBusy,
			Msg: "too many open event streams; retry later", RetryAfter: 5 * time.Second}, w)
		return nil, false
	}
	return release, true
}

// lifetime is how long this stream may last: the maximum less up to a tenth, so that streams opened
// together do not all end, and reconnect, together.
func (o options) lifetime() time.Duration {
	if o.streamLifetime <= 0 {
		return 0
	}
	return o.streamLifetime - rand.N(o.streamLifetime/10+1)
}
