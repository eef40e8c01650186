package edge_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ardanlabs/conf/v3"
	"github.com/pizzajoint/mesh/gateway/edge"
)

// Each setting reaches the limit it names: a client is refused past the burst or cap of that setting, and
// the refusal is counted under that limit's label.
func TestConfigOptions(t *testing.T) {
	c := edge.Config{OrderRate: 0.001, OrderBurst: 2, LoginRate: 0.001, LoginBurst: 1, Clients: 10,
		StreamsPerClient: 1, Streams: 2, StreamLifetime: 10 * time.Second}
	orders := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler { return l.Orders(enc, next) }
	logins := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler { return l.Logins(enc, next) }
	streams := func(l edge.Limits, enc edge.ErrorEncoder, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := l.AcquireStream(enc, w, r); ok {
				next.ServeHTTP(w, r)
			}
		})
	}
	tests := []struct {
		name    string
		guard   func(edge.Limits, edge.ErrorEncoder, http.Handler) http.Handler
		clients []string
		served  int
		kind    error
		label   string
	}{
		{"OrderBurst", orders, []string{"a", "a", "a"}, 2, edge.ErrRateLimited, "orders"},
		{"LoginBurst", logins, []string{"a", "a"}, 1, edge.ErrRateLimited, "logins"},
		{"StreamsPerClient", streams, []string{"a", "a"}, 1, edge.ErrRateLimited, "client_streams"},
		{"Streams", streams, []string{"a", "b", "c"}, 2, edge.ErrTooBusy, "all_streams"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused := counter{counts: map[string]float64{}}
			var f refusal
			served := 0
			h := tt.guard(edge.Apply(c.Options(refused)), f.encode, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
			for _, client := range tt.clients {
				r := httptest.NewRequest("POST", "/", nil)
				r.RemoteAddr = "192.0.2." + map[string]string{"a": "1", "b": "2", "c": "3"}[client] + ":1234"
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			if served != tt.served || !errors.Is(f.err, tt.kind) {
				t.Errorf("%d served, refused with %v; want %d served, then %v", served, f.err, tt.served, tt.kind)
			}
			if got := refused.counts[tt.label]; got != 1 || len(refused.counts) != 1 {
				t.Errorf("refusals counted %v, want one under %q", refused.counts, tt.label)
			}
		})
	}
	t.Run("StreamLifetime", func(t *testing.T) {
		if d := edge.Apply(c.Options(counter{})).Lifetime(); d > c.StreamLifetime || d < c.StreamLifetime*9/10 {
			t.Errorf("lifetime %v, want within a tenth below %v", d, c.StreamLifetime)
		}
	})
}

// The settings keep their environment names and defaults: deployments set GATEWAY_LIMITS_….
func TestConfigNamesAndDefaults(t *testing.T) {
	t.Setenv("GATEWAY_LIMITS_STREAMS_PER_CLIENT", "7")
	var cfg struct{ Limits edge.Config }
	if _, err := conf.Parse("GATEWAY", &cfg); err != nil {
		t.Fatal(err)
	}
	want := edge.Config{OrderRate: 50, OrderBurst: 100, LoginRate: 0.2, LoginBurst: 10, Clients: 10000,
		StreamsPerClient: 7, Streams: 10000, StreamLifetime: 30 * time.Minute}
	if cfg.Limits != want {
		t.Errorf("parsed %+v, want %+v", cfg.Limits, want)
	}
}
