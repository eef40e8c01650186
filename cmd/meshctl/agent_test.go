package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `meshctl consul`: the token comes from stdin alone and goes only to the agent; every question is bounded,
// reading the token included. The answers themselves are platform/consulagent's tests.
func TestConsulCommand(t *testing.T) {
	const token = "3f1c-the-instance-token"
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/status/leader":
			_, _ = w.Write([]byte(`"127.0.0.1:8300"`))
		case r.Header.Get("X-Consul-Token") != token:
			http.Error(w, "ACL not found", http.StatusForbidden)
		case r.URL.Path == "/v1/agent/service/order-1-sidecar-proxy":
			_, _ = w.Write([]byte(`{"ID":"order-1-sidecar-proxy","Port":21000}`))
		case r.URL.Path == "/v1/agent/health/service/id/order-1":
			_, _ = w.Write([]byte(`{}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(agent.Close)
	stalled, release := io.Pipe() // a caller that forgot the pipe: stdin never ends
	t.Cleanup(func() { _ = release.Close() })

	for _, tc := range []struct {
		name    string
		args    []string
		stdin   io.Reader
		wantErr bool
		out     string
	}{
		{"leader", []string{"leader"}, nil, false, ""},
		{"leader, from the environment's address", []string{"leader"}, nil, false, ""},
		{"sidecar port", []string{"sidecar-port", "order-1"}, strings.NewReader(token + "\n"), false, "21000\n"},
		{"passing", []string{"passing", "order-1"}, strings.NewReader(token), false, ""},
		{"a wrong token", []string{"passing", "order-1"}, strings.NewReader("another\n"), true, ""},
		{"no token", []string{"sidecar-port", "order-1"}, strings.NewReader(""), true, ""},
		{"stdin never ends", []string{"-timeout", "300ms", "passing", "order-1"}, stalled, true, ""},
		{"no ID", []string{"passing"}, strings.NewReader(token), true, ""},
		{"an unknown question", []string{"members"}, nil, true, ""},
		{"no question", nil, nil, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-addr", agent.URL}, tc.args...)
			if strings.Contains(tc.name, "environment") {
				t.Setenv("CONSUL_HTTP_ADDR", agent.URL)
				args = tc.args
			}
			if tc.stdin == nil {
				tc.stdin = strings.NewReader("")
			}
			var stdout, stderr bytes.Buffer
			start := time.Now()
			err := consulCmd(context.Background(), args, tc.stdin, &stdout, &stderr)
			if (err != nil) != tc.wantErr || stdout.String() != tc.out {
				t.Errorf("consul %v = %v, stdout %q; want an error: %v, stdout %q", args, err, stdout.String(), tc.wantErr, tc.out)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s", took)
			}
			if err != nil && strings.Contains(err.Error()+stderr.String(), token) {
				t.Errorf("the token is in the error: %v %s", err, stderr.String())
			}
		})
	}
}

// `meshctl vault answers`: Vault's health path, any status; the answers themselves are platform/probe's tests.
func TestVaultCommand(t *testing.T) {
	asked := make(chan string, 10)
	vault := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.URL.Path
		w.WriteHeader(http.StatusServiceUnavailable) // sealed
	}))
	t.Cleanup(vault.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vault.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"a sealed Vault answers", []string{"-addr", vault.URL, "-cacert", ca, "answers"}, false},
		{"unverified", []string{"-addr", vault.URL, "answers"}, true},
		{"no address", []string{"-cacert", ca, "answers"}, true},
		{"an unknown question", []string{"-addr", vault.URL, "-cacert", ca, "sealed"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("VAULT_ADDR", "")
			t.Setenv("VAULT_CACERT", "")
			if err := vaultCmd(context.Background(), tc.args, io.Discard); (err != nil) != tc.wantErr {
				t.Errorf("vault %v = %v; want an error: %v", tc.args, err, tc.wantErr)
			}
		})
	}
	if path := <-asked; path != "/v1/sys/health" {
		t.Errorf("asked %s; want /v1/sys/health", path)
	}
}
