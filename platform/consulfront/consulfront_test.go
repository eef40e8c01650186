package consulfront

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The front passes its own service's leaf certificate and every other path, and refuses other services' leaves
// in every spelling of the path.
func TestFrontRefusesOtherLeaves(t *testing.T) {
	var forwarded []string
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwarded = append(forwarded, r.URL.Path)
		_, _ = io.WriteString(w, "from the agent")
	}))
	defer agent.Close()
	h, err := Handler(agent.URL, "order", false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	defer front.Close()
	tests := []struct {
		path string
		want int
	}{
		{"/v1/agent/connect/ca/leaf/order", 200},
		{"/v1/agent/connect/ca/roots", 200},
		{"/v1/catalog/services", 200},
		{"/v1/agent/connect/ca/leaf/gateway", 403},
		{"/v1/agent/connect/ca/leaf/order/../gateway", 403},
		{"/v1/agent/connect/ca/leaf/gatew%61y", 403},
		{"/v1//agent/connect/ca/leaf/gateway", 403},
		{"/v1/agent/connect/./ca/leaf/gateway", 403},
		{"/v1/agent/connect/ca/leaf/order%2F..%2Fgateway", 403},
		{"/v1/agent/connect/ca/leaf/gateway/", 403},
		{"/v1/agent/connect/ca/leaf/order/../gateway/", 403},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			forwarded = nil
			req, _ := http.NewRequest("GET", front.URL, nil)
			req.URL.Opaque = tt.path // sent as written, not cleaned by the client
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s: %d; want %d", tt.path, resp.StatusCode, tt.want)
			}
			for _, f := range forwarded {
				if strings.HasPrefix(f, leafPrefix) && f != leafPrefix+"order" {
					t.Errorf("%s reached the agent as %s", tt.path, f)
				}
			}
		})
	}
}

// The operators' front passes no leaf at all.
func TestUIFrontPassesNoLeaf(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer agent.Close()
	h, _ := Handler(agent.URL, "", true, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/agent/connect/ca/leaf/order", nil))
	if rec.Code != 403 {
		t.Errorf("leaf through the UI front: %d; want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status/leader", nil))
	if rec.Code != 200 || rec.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("status through the UI front: %d, HSTS %q", rec.Code, rec.Header().Get("Strict-Transport-Security"))
	}
}

// A trailing slash reaches the agent as sent: the UI lives at /ui/, and the agent redirects /ui there.
func TestFrontKeepsTrailingSlash(t *testing.T) {
	var got []string
	agent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.URL.Path) }))
	defer agent.Close()
	h, _ := Handler(agent.URL, "", true, slog.New(slog.DiscardHandler))
	for path, want := range map[string]string{"/ui/": "/ui/", "/ui": "/ui", "/ui/dc1/services/": "/ui/dc1/services/", "/ui//x/./": "/ui/x/"} {
		got = nil
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s reached the agent as %v, want %s", path, got, want)
		}
	}
}
