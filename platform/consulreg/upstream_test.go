package consulreg

import "testing"

// An upstream's local port comes from the URL the instance calls it at; a URL without a usable port is refused.
func TestUpstreamAt(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want int // 0: an error
	}{
		{"http://127.0.0.1:9191", 9191},
		{"nats://127.0.0.1:9292", 9292},
		{"http://localhost:4318/", 4318},
		{"http://127.0.0.1", 0},
		{"http://127.0.0.1:x", 0},
		{"http://127.0.0.1:0", 0},
		{"nats://127.0.0.1:99999", 0},
	} {
		up, err := UpstreamAt("svc", tc.url)
		if tc.want == 0 && err == nil {
			t.Errorf("UpstreamAt(%q) = %+v; want an error", tc.url, up)
		}
		if tc.want != 0 && (err != nil || up != (Upstream{Service: "svc", LocalPort: tc.want})) {
			t.Errorf("UpstreamAt(%q) = %+v, %v; want svc on %d", tc.url, up, err, tc.want)
		}
	}
}
