package dblease

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/platform/vaultauth"
)

// Start's stop ends the login and the Source and returns, whether or not the service's context has ended and
// whether or not a login was ever made (here Vault cannot be reached: nothing listens at its address).
func TestStartStopReturns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	for _, f := range []string{"role-id", "secret-id"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := vaultauth.Config{Addr: "https://" + addr, AuthMethod: vaultauth.MethodAppRole, Timeout: time.Second,
		RoleIDFile: filepath.Join(dir, "role-id"), SecretIDFile: filepath.Join(dir, "secret-id")}

	tests := []struct {
		name      string
		endFirst  bool // the service's context ends before stop is called
		stopTwice bool
	}{
		{"stop while the service runs", false, false},
		{"stop after the service's context ended", true, false},
		{"stop called twice", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			src, err := Login(cfg, "order", slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if src.Session() == nil {
				t.Fatal("Session() = nil")
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop := src.Start(ctx)
			time.Sleep(100 * time.Millisecond) // let the login fail at least once
			if tt.endFirst {
				cancel()
			}
			done := make(chan struct{})
			go func() {
				stop()
				if tt.stopTwice {
					stop()
				}
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("stop did not return: the login or the Source is still running")
			}
			if src.Ready(context.Background()) == nil {
				t.Error("Ready without ever logging in")
			}
			// No token was had, so there is nothing to give back and nothing to warn of.
			if bytes.Contains(logs.Bytes(), []byte("could not give the vault token back")) {
				t.Errorf("stop warned of a token it never had:\n%s", logs.String())
			}
		})
	}
}
