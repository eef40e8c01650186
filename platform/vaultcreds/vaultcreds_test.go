package vaultcreds

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
)

// approle is an AppRole "order" on a dev Vault whose tokens may only look themselves up and renew; tokenTTL
// is short so renewals (and their failure after a revocation) happen within a test.
type approle struct {
	v            *devserver.Vault
	roleIDFile   string
	secretIDFile string
}

func newAppRole(t *testing.T, tokenTTL string) *approle {
	t.Helper()
	v := devserver.StartVault(t)
	root := v.Root
	if err := root.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy("self", `path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"order", "gateway"} {
		if _, err := root.Logical().Write("auth/approle/role/"+role, map[string]any{
			"token_policies": "self", "token_ttl": tokenTTL, "token_max_ttl": "1h", "secret_id_num_uses": 5,
		}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	a := &approle{v: v, roleIDFile: filepath.Join(dir, "role-id"), secretIDFile: filepath.Join(dir, "secret-id")}
	sec, err := root.Logical().Read("auth/approle/role/order/role-id")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, a.roleIDFile, sec.Data["role_id"].(string))
	writeFile(t, a.secretIDFile, a.wrappedSecretID(t, "order"))
	return a
}

// wrappedSecretID makes a secret_id of role, response-wrapped, as meshctl delivers it.
func (a *approle) wrappedSecretID(t *testing.T, role string) string {
	t.Helper()
	c, err := a.v.Root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(a.v.RootToken)
	c.SetWrappingLookupFunc(func(string, string) string { return "1m" })
	sec, err := c.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sec.WrapInfo.Token
}

func (a *approle) source(t *testing.T) *Source {
	t.Helper()
	s, err := New(Config{Addr: a.v.Addr, CACert: a.v.CACert, RoleIDFile: a.roleIDFile, SecretIDFile: a.secretIDFile,
		SecretIDWrapped: true, Role: "order", Timeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runLoggedIn runs s until the test ends, and waits until it has logged in.
func runLoggedIn(t *testing.T, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := s.WaitLoggedIn(wctx); err != nil {
		t.Fatal(err)
	}
}

// wrappingTokenLive says whether a wrapping token can still be unwrapped (the lookup does not use it up).
func (a *approle) wrappingTokenLive(token string) bool {
	_, err := a.v.Root.Logical().Write("sys/wrapping/lookup", map[string]any{"token": token})
	return err == nil
}

func writeFile(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(v), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLogsInWithAWrappedSecretID(t *testing.T) {
	a := newAppRole(t, "20m")
	wrapped, _ := os.ReadFile(a.secretIDFile)
	s := a.source(t)
	runLoggedIn(t, s)
	sec, err := s.Client().Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if policies, _ := sec.TokenPolicies(); !slices.Contains(policies, "self") {
		t.Errorf("logged in with policies %v; want the role's", policies)
	}
	if a.wrappingTokenLive(string(wrapped)) {
		t.Error("the delivered wrapping token can still be unwrapped after the login used it")
	}
}

// A wrapping token that did not come from the role's secret-id endpoint, or that someone else unwrapped first,
// is refused.
func TestRefusesForeignOrUsedWrappingTokens(t *testing.T) {
	a := newAppRole(t, "20m")
	s := a.source(t)
	ctx := context.Background()

	other := a.wrappedSecretID(t, "gateway")
	if _, err := s.unwrapSecretID(ctx, other); err == nil || !strings.Contains(err.Error(), "not an AppRole secret_id of role") {
		t.Errorf("a secret_id of role gateway: %v; want it refused", err)
	}
	if !a.wrappingTokenLive(other) {
		t.Error("the refused wrapping token was used up; the check must come before the unwrap")
	}

	c, _ := a.v.Root.Clone()
	c.SetToken(a.v.RootToken)
	c.SetWrappingLookupFunc(func(string, string) string { return "1m" })
	arbitrary, err := c.Logical().Write("sys/wrapping/wrap", map[string]any{"secret_id": "chosen-by-someone-else"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.unwrapSecretID(ctx, arbitrary.WrapInfo.Token); err == nil {
		t.Error("a wrapping token made by sys/wrapping/wrap was accepted")
	}

	stolen := a.wrappedSecretID(t, "order")
	if _, err := a.v.Client(t, "").Logical().Unwrap(stolen); err != nil {
		t.Fatal(err)
	}
	if _, err := s.unwrapSecretID(ctx, stolen); err == nil || !strings.Contains(err.Error(), "compromised") {
		t.Errorf("a wrapping token someone else unwrapped: %v; want a refusal that says so", err)
	}
}

// A new secret_id delivered while the service runs is unwrapped within seconds, not at the next login.
func TestNewSecretIDIsUnwrappedOnArrival(t *testing.T) {
	a := newAppRole(t, "20m")
	s := a.source(t)
	runLoggedIn(t, s)
	next := a.wrappedSecretID(t, "order")
	writeFile(t, a.secretIDFile, next)
	within(t, 10*time.Second, "the new wrapping token is unwrapped", func() bool { return !a.wrappingTokenLive(next) })
	s.secretMu.Lock()
	from := s.wrappedFrom
	s.secretMu.Unlock()
	if from != next {
		t.Error("the source did not keep the new secret_id")
	}
}

// When Vault revokes the service's token, the service logs in again by itself with the secret_id it holds.
func TestLogsInAgainAfterItsTokenIsRevoked(t *testing.T) {
	a := newAppRole(t, "3s")
	s := a.source(t)
	runLoggedIn(t, s)
	first, logins := s.Client().Token(), s.logins.Load()
	if err := a.v.Root.Auth().Token().RevokeTree(first); err != nil {
		t.Fatal(err)
	}
	within(t, 15*time.Second, "a new login after the revocation", func() bool {
		return s.logins.Load() > logins && s.LoggedIn(context.Background()) == nil
	})
	if s.Client().Token() == first {
		t.Error("still holding the revoked token")
	}
	if _, err := s.Client().Auth().Token().LookupSelf(); err != nil {
		t.Errorf("the new token does not work: %v", err)
	}
}
