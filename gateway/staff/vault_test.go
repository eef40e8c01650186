package staff_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/staff"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/platform/tokenhash"
	"github.com/pizzajoint/mesh/platform/vaultauth"
)

// Without Vault settings staff sign-in is off, and says so once: the staff routes answer 503.
func TestFromVaultWithoutVault(t *testing.T) {
	var logs bytes.Buffer
	auth, run, err := staff.FromVault(vaultauth.Config{}, staff.Config{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || auth != nil {
		t.Fatalf("FromVault = %v, %v; want no Auth and no error", auth, err)
	}
	run(context.Background()) // returns at once: nothing to keep fresh
	if !strings.Contains(logs.String(), "staff sign-in is off") {
		t.Errorf("logs %q: want a warning that staff sign-in is off", logs.String())
	}
	rec := staffCall{method: "POST", path: "/staff/login", body: `{"token":"tok-alice"}`}.do(t, auth.Login(gateway.EncodeError))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("login without Vault: %d, want 503", rec.Code)
	}
}

// With Vault settings a staff member signs in with a token whose hash an operator put in KV at TokensPath, as
// the gateway's AppRole; a token whose hash is elsewhere, or nowhere, is refused.
func TestFromVault(t *testing.T) {
	v := devserver.StartVault(t)
	for path, owners := range map[string]map[string]any{
		"secret/data/pizza/staff-tokens": {"alice": tokenhash.Hash("tok-alice")},
		"secret/data/pizza/other-tokens": {"bob": tokenhash.Hash("tok-bob")},
	} {
		if _, err := v.Root.Logical().Write(path, map[string]any{"data": owners}); err != nil {
			t.Fatal(err)
		}
	}
	roleIDFile, secretIDFile := v.AppRole(t, "gateway", `path "secret/data/pizza/*" { capabilities = ["read"] }`, "20m")
	vc := vaultauth.Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: vaultauth.MethodAppRole,
		RoleIDFile: roleIDFile, SecretIDFile: secretIDFile, Timeout: 5 * time.Second}
	auth, run, err := staff.FromVault(vc, staff.Config{TokensPath: "secret/data/pizza/staff-tokens", Reload: time.Minute},
		slog.New(slog.DiscardHandler))
	if err != nil || auth == nil {
		t.Fatalf("FromVault = %v, %v; want an Auth", auth, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() }) // run ends with its context

	tests := []struct {
		name, token string
		status      int
	}{
		{"a token in KV at TokensPath", "tok-alice", http.StatusNoContent},
		{"a token in KV elsewhere", "tok-bob", http.StatusUnauthorized},
		{"a token nowhere", "tok-carol", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := staffCall{method: "POST", path: "/staff/login", body: `{"token":"` + tt.token + `"}`}.do(t, auth.Login(gateway.EncodeError))
			if rec.Code != tt.status {
				t.Errorf("login: %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
		})
	}
}
