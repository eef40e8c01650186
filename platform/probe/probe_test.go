package probe

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMain_Answers(t *testing.T) {
	slow := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(http.ResponseWriter, *http.Request) { <-slow })
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(mux)
	t.Cleanup(tlsSrv.Close)
	// Cleanups run last-in first-out: release the slow handler before the servers wait for it.
	t.Cleanup(func() { close(slow) })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"2xx", []string{plain.URL + "/ok"}, 0},
		{"5xx", []string{plain.URL + "/down"}, 1},
		{"a redirect is not followed", []string{plain.URL + "/moved"}, 1},
		{"nobody listening", []string{"http://127.0.0.1:1/ok"}, 1},
		{"timeout", []string{"-timeout", "200ms", plain.URL + "/slow"}, 1},
		{"https with the CA", []string{"-cacert", ca, tlsSrv.URL + "/ok"}, 0},
		{"https unverified is refused", []string{tlsSrv.URL + "/ok"}, 1},
		{"https insecure", []string{"-insecure", tlsSrv.URL + "/ok"}, 0},
		{"no URL", nil, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := Main(tc.args, io.Discard); got != tc.want {
				t.Fatalf("Main(%q) = %d, want %d", tc.args, got, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

// Answers: any HTTP answer is one (a sealed Vault's 503 too); no answer in time is not.
func TestAnswers(t *testing.T) {
	slow := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/sealed", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/slow", func(http.ResponseWriter, *http.Request) { <-slow })
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(slow) })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, ca string
		answers       bool
	}{
		{"2xx", srv.URL + "/ok", ca, true},
		{"5xx", srv.URL + "/sealed", ca, true},
		{"slow", srv.URL + "/slow", ca, false},
		{"unverified", srv.URL + "/ok", "", false},
		{"nobody listening", "https://127.0.0.1:1/ok", ca, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Answers(context.Background(), tc.url, tc.ca, 300*time.Millisecond)
			if (err == nil) != tc.answers {
				t.Errorf("Answers(%s) = %v; want an answer: %v", tc.url, err, tc.answers)
			}
		})
	}
}
