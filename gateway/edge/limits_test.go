package edge_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/platform/clientlimit"
)

// counter counts by the "limit" label.
type counter struct {
	counts map[string]float64
	limit  string
}

func (c counter) With(lv ...string) metrics.Counter { return counter{counts: c.counts, limit: lv[1]} }
func (c counter) Add(d float64)                     { c.counts[c.limit] += d }

// refusal is what the edge answered a request with: the error it gave the encoder.
type refusal struct{ err error }

func (f *refusal) encode(_ context.Context, err error, w http.ResponseWriter) {
	f.err = err
	w.WriteHeader(http.StatusTeapot) // the encoder's answer, whatever it is, is the one written
}

// Each limit lets a client through until its budget is spent, then answers a *LimitError of its kind through the
// encoder it is given, never reaching next, and counts the refusal under its label. Without options nothing is
// limited.
func TestLimits(t *testing.T) {
	orders := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler { return l.Orders(enc, next) }
	logins := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler { return l.Logins(enc, next) }
	streams := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := l.AcquireStream(enc, w, r); ok { // held open: never released
				next.ServeHTTP(w, r)
			}
		})
	}
	tests := []struct {
		name    string
		limited bool // orders: burst 2; sign-ins: burst 1; streams: 1 per client, 2 in all
		guard   func(edge.Limits, edge.ErrorEncoder, http.Handler) http.Handler
		clients []string // one request from each, in turn
		served  int      // how many reach next
		kind    error    // of the last refusal
		label   string
	}{
		{"orders within the burst", true, orders, []string{"a", "a"}, 2, nil, ""},
		{"orders past the burst", true, orders, []string{"a", "a", "a"}, 2, edge.ErrRateLimited, "orders"},
		{"orders are per client", true, orders, []string{"a", "a", "b", "b"}, 4, nil, ""},
		{"sign-ins past the burst", true, logins, []string{"a", "a"}, 1, edge.ErrRateLimited, "logins"},
		{"one client's streams past its cap", true, streams, []string{"a", "a"}, 1, edge.ErrRateLimited, "client_streams"},
		{"all streams past the cap", true, streams, []string{"a", "b", "c"}, 2, edge.ErrTooBusy, "all_streams"},
		{"no options, no limits", false, orders, []string{"a", "a", "a", "a"}, 4, nil, ""},
		{"no options, no stream caps", false, streams, []string{"a", "a", "a"}, 3, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused := counter{counts: map[string]float64{}}
			opts := []edge.Option{edge.WithRefusalCounter(refused)}
			if tt.limited {
				opts = append(opts,
					edge.WithOrderRateLimit(clientlimit.NewRateLimiter(0.001, 2, 10)),
					edge.WithLoginRateLimit(clientlimit.NewRateLimiter(0.001, 1, 10)),
					edge.WithStreamLimits(clientlimit.NewStreamLimiter(1, 2), 0))
			}
			l := edge.Apply(opts)
			var f refusal
			served := 0
			h := tt.guard(l, f.encode, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
			for _, c := range tt.clients {
				r := httptest.NewRequest("POST", "/", nil)
				r.RemoteAddr = "192.0.2." + map[string]string{"a": "1", "b": "2", "c": "3"}[c] + ":1234"
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			if served != tt.served {
				t.Errorf("%d requests served, want %d", served, tt.served)
			}
			if tt.kind == nil {
				if f.err != nil || len(refused.counts) != 0 {
					t.Errorf("refused with %v (counted %v), want none", f.err, refused.counts)
				}
				return
			}
			var le *edge.LimitError
			if !errors.As(f.err, &le) || !errors.Is(f.err, tt.kind) || le.RetryAfter <= 0 || le.Msg == "" {
				t.Fatalf("refused with %#v, want a *LimitError of %v telling when to retry", f.err, tt.kind)
			}
			if got := refused.counts[tt.label]; got != 1 || len(refused.counts) != 1 {
				t.Errorf("refusals counted %v, want one under %q", refused.counts, tt.label)
			}
		})
	}
}

// A stream lasts its maximum less up to a tenth, so streams opened together do not all end together; without a
// maximum it lasts until something else ends it.
func TestLifetime(t *testing.T) {
	const maxLifetime = 10 * time.Second
	l := edge.Apply([]edge.Option{edge.WithStreamLimits(nil, maxLifetime)})
	seen := map[time.Duration]bool{}
	for range 200 {
		d := l.Lifetime()
		if d > maxLifetime || d < maxLifetime-maxLifetime/10 {
			t.Fatalf("lifetime %v, want within a tenth below %v", d, maxLifetime)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Errorf("every lifetime was %v: streams opened together would end together", l.Lifetime())
	}
	if d := edge.Apply(nil).Lifetime(); d != 0 {
		t.Errorf("no maximum: lifetime %v, want 0", d)
	}
}
