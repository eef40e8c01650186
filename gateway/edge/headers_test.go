package edge_test

import (
	"net/http"
	"testing"

	"github.com/pizzajoint/mesh/gateway/edge"
)

// Every page gets the same policy: this origin only, no framing, no Referer.
func TestSetPageHeaders(t *testing.T) {
	h := http.Header{}
	edge.SetPageHeaders(h)
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-cache",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}
