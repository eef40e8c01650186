package consulagent

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Our reading of the agent's answers, on a stand-in: a real agent (agent_test.go) cannot be made to lose its
// leader, stall or redirect.
func TestAnswers(t *testing.T) {
	answer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) }
	}
	stall := make(chan struct{})
	// standIn serves h on a fresh address; the stalled handler is released before the servers wait for it.
	var servers []*httptest.Server
	t.Cleanup(func() {
		close(stall)
		for _, s := range servers {
			s.Close()
		}
	})
	standIn := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		servers = append(servers, s)
		return s.URL
	}
	tlsSrv := httptest.NewTLSServer(answer(`"127.0.0.1:8300"`))
	servers = append(servers, tlsSrv)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr bool
		is      error
	}{
		{"a leader", Config{Addr: standIn(answer(`"127.0.0.1:8300"`))}, false, nil},
		{"no leader", Config{Addr: standIn(answer(`""`))}, true, ErrNoLeader},
		{"not JSON", Config{Addr: standIn(answer(`<html>`))}, true, nil},
		{"a redirect is not followed", Config{Addr: standIn(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/elsewhere" {
				_, _ = w.Write([]byte(`"127.0.0.1:8300"`))
				return
			}
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		})}, true, nil},
		{"an error status", Config{Addr: standIn(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		})}, true, nil},
		{"bounded", Config{Addr: standIn(func(http.ResponseWriter, *http.Request) { <-stall }), Timeout: 200 * time.Millisecond}, true, nil},
		{"nobody listening", Config{Addr: "http://127.0.0.1:1"}, true, nil},
		{"no socket", Config{Addr: "unix://" + filepath.Join(t.TempDir(), "none.sock")}, true, nil},
		{"https with the CA", Config{Addr: tlsSrv.URL, CAFile: ca}, false, nil},
		{"https unverified is refused", Config{Addr: tlsSrv.URL}, true, nil},
		{"no address", Config{}, true, nil},
		{"another scheme", Config{Addr: "ftp://127.0.0.1:1"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			a, err := New(tc.cfg)
			if err == nil {
				_, err = a.Leader(context.Background())
			}
			if (err != nil) != tc.wantErr || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Errorf("Leader = %v; want an error: %v (%v)", err, tc.wantErr, tc.is)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Leader took %s; every answer here is due well within 2s", took)
			}
		})
	}

	t.Run("the token is sent as given", func(t *testing.T) {
		seen := make(chan []string, 1)
		a, _ := New(Config{Addr: standIn(func(w http.ResponseWriter, r *http.Request) {
			seen <- r.Header.Values("X-Consul-Token")
			_, _ = w.Write([]byte(`{"Port":21000}`))
		}), Token: "the-token"})
		_, err := a.SidecarPort(context.Background(), "order-1")
		if got := <-seen; err != nil || len(got) != 1 || got[0] != "the-token" {
			t.Errorf("SidecarPort: %v, token header %q; want the-token once", err, got)
		}
	})
	t.Run("a sidecar without a port", func(t *testing.T) {
		a, _ := New(Config{Addr: standIn(answer(`{"ID":"order-1-sidecar-proxy"}`))})
		if port, err := a.SidecarPort(context.Background(), "order-1"); err == nil {
			t.Errorf("SidecarPort = %d; want an error", port)
		}
	})
	t.Run("an ID stays one path segment", func(t *testing.T) {
		asked := make(chan string, 1)
		a, _ := New(Config{Addr: standIn(func(w http.ResponseWriter, r *http.Request) {
			asked <- r.URL.EscapedPath()
			_, _ = w.Write([]byte(`{"Port":21000}`))
		})})
		_, err := a.SidecarPort(context.Background(), "a/../b")
		if path := <-asked; err != nil || path != "/v1/agent/service/a%2F..%2Fb-sidecar-proxy" {
			t.Errorf("SidecarPort: %v, asked %s; want the ID escaped as one segment", err, path)
		}
	})
}
