package customer_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/platform/reqid"
)

const pagePolicy = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// The customer's pages and their files are served with their types and the strict policy; every other path,
// including near misses under the pages' prefixes, stays a JSON 404 like any unknown endpoint. They are
// served as the gateway mounts them, beside its other routes; no page calls the order service.
func TestCustomerPages(t *testing.T) {
	mux := http.NewServeMux()
	gateway.MakeHTTPHandler(mux, gateway.MakeEndpoints(gateway.NewService(nil)), nil)
	gw := httptest.NewTLSServer(reqid.Middleware(mux))
	t.Cleanup(gw.Close)
	const id = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

	tests := []struct {
		name, method, path string
		status             int
		contentType        string // prefix
		contains           string
	}{
		{"shop", "GET", "/", 200, "text/html; charset=utf-8", `src="/app/shop.js"`},
		{"shop head", "HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"tracking page", "GET", "/track/" + id, 200, "text/html; charset=utf-8", `src="/app/track.js"`},
		{"shop script", "GET", "/app/shop.js", 200, "text/javascript", "Idempotency-Key"},
		{"tracking script", "GET", "/app/track.js", 200, "text/javascript", "EventSource"},
		{"shared script", "GET", "/app/common.js", 200, "text/javascript", "localStorage"},
		{"styles", "GET", "/app/style.css", 200, "text/css", ".steps"},
		{"staff portal still there", "GET", "/staff/", 200, "text/html", "Kitchen board"},

		{"unknown path", "GET", "/pizzas", 404, "application/json", `"no such endpoint"`},
		{"index by name", "GET", "/index.html", 404, "application/json", ""},
		{"favicon", "GET", "/favicon.ico", 404, "application/json", ""},
		{"post to the shop", "POST", "/", 404, "application/json", ""},
		{"assets folder", "GET", "/app/", 404, "application/json", ""},
		{"page under assets", "GET", "/app/index.html", 404, "application/json", ""},
		{"missing asset", "GET", "/app/missing.js", 404, "application/json", ""},
		{"asset in a folder", "GET", "/app/x/shop.js", 404, "application/json", ""},
		{"tracking without id", "GET", "/track/", 404, "application/json", ""},
		{"tracking a malformed id", "GET", "/track/not-an-order", 404, "application/json", ""},
		{"below a tracking page", "GET", "/track/" + id + "/more", 404, "application/json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, gw.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s = %d, want %d: %.200s", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type = %q, want %q", ct, tt.contentType)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body does not contain %q: %.200s", tt.contains, body)
			}
			if tt.status != 200 {
				return
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != pagePolicy {
				t.Errorf("Content-Security-Policy = %q, want %q", got, pagePolicy)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy = %q, want no-referrer (a Referer would carry the order's ID)", got)
			}
		})
	}
}

// The policy forbids inline code, and page data must reach the DOM as text only: the files must not rely on
// either, or the pages would break (or open a hole) in ways only a browser would show.
func TestCustomerPagesHaveNoInlineCodeOrMarkupInjection(t *testing.T) {
	forbidden := map[string]*regexp.Regexp{
		"innerHTML or outerHTML":     regexp.MustCompile(`(?i)\b(inner|outer)HTML\b|insertAdjacentHTML|document\.write`),
		"inline script":              regexp.MustCompile(`(?i)<script(\s[^>]*)?>\s*[^<\s]`),
		"inline event handler":       regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`),
		"inline style":               regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=|<style`),
		"script from another origin": regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`),
		"eval":                       regexp.MustCompile(`\beval\(|new Function\(`),
	}
	files, err := filepath.Glob(filepath.Join("customerui", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in customerui: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, re := range forbidden {
			if loc := re.FindIndex(b); loc != nil {
				t.Errorf("%s: %s at byte %d: %q", f, what, loc[0], b[loc[0]:min(loc[1]+20, len(b))])
			}
		}
	}
}
