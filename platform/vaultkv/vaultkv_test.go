package vaultkv

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/platform/vaultauth"
)

// gateway is a dev Vault holding staff token hashes in KV v2 (the dev server mounts it at secret/), and a
// running session of an AppRole that may read them and nothing else.
func gateway(t *testing.T) (*devserver.Vault, *vaultauth.Session) {
	t.Helper()
	v := devserver.StartVault(t)
	if _, err := v.Root.Logical().Write("secret/data/pizza/staff-tokens", map[string]any{
		"data": map[string]any{"alice": "hash-a", "bob": "hash-b", "count": 2},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Root.Logical().Write("secret/data/pizza/other", map[string]any{"data": map[string]any{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	// A long token TTL: no renewal within the test notices a revocation, only the refused read does.
	roleIDFile, secretIDFile := v.AppRole(t, "gateway", `path "secret/data/pizza/staff-tokens" { capabilities = ["read"] }
path "secret/data/pizza/none-yet" { capabilities = ["read"] }`, "20m")
	session, err := vaultauth.New(vaultauth.Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: vaultauth.MethodAppRole,
		RoleIDFile: roleIDFile, SecretIDFile: secretIDFile, Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { session.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return v, session
}

func TestRead(t *testing.T) {
	_, session := gateway(t)
	r := New(session)
	tests := []struct {
		name string
		path string
		want map[string]string
		err  string // "" for a read
	}{
		{"a secret", "secret/data/pizza/staff-tokens", map[string]string{"alice": "hash-a", "bob": "hash-b"}, ""},
		{"no secret yet", "secret/data/pizza/none-yet", map[string]string{}, ""},
		{"a secret the policy does not allow", "secret/data/pizza/other", nil, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Strings(context.Background(), tt.path) // the first read waits for the login
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Strings(%s): %v; want an error saying %q", tt.path, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("Strings(%s) = %v; want %v", tt.path, got, tt.want)
			}
		})
	}
}

// After an operator revokes the token, a read logs in again and succeeds, instead of failing until the
// token's next renewal.
func TestReadLogsInAgainWhenTheTokenIsRefused(t *testing.T) {
	v, session := gateway(t)
	r := New(session)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	first, err := session.Await(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Root.Auth().Token().RevokeTree(first.Client().Token()); err != nil {
		t.Fatal(err)
	}
	got, err := r.Strings(ctx, "secret/data/pizza/staff-tokens")
	if err != nil {
		t.Fatalf("read after the revocation: %v", err)
	}
	if got["alice"] != "hash-a" {
		t.Errorf("read %v after the revocation", got)
	}
	now, _ := session.Current()
	if now == nil || now == first {
		t.Error("the read succeeded without a new login")
	}
}
