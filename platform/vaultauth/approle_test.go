package vaultauth

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit"
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
	devserver.WriteFile(t, a.roleIDFile, sec.Data["role_id"].(string))
	devserver.WriteFile(t, a.secretIDFile, a.wrappedSecretID(t, "order"))
	return a
}

// wrappedSecretID makes a secret_id of role, response-wrapped, as meshctl delivers it.
func (a *approle) wrappedSecretID(t *testing.T, role string) string {
	t.Helper()
	c := a.v.Client(t, a.v.RootToken)
	c.SetWrappingLookupFunc(func(string, string) string { return "1m" })
	sec, err := c.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sec.WrapInfo.Token
}

// plainSecretID makes a secret_id of role, not wrapped.
func (a *approle) plainSecretID(t *testing.T, role string) string {
	t.Helper()
	sec, err := a.v.Root.Logical().Write("auth/approle/role/"+role+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	return sec.Data["secret_id"].(string)
}

func (a *approle) config(wrapped bool) Config {
	return Config{Addr: a.v.Addr, CACert: a.v.CACert, AuthMethod: MethodAppRole, RoleIDFile: a.roleIDFile,
		SecretIDFile: a.secretIDFile, SecretIDWrapped: wrapped, Role: "order", Timeout: 5 * time.Second}
}

func (a *approle) session(t *testing.T) *Session {
	t.Helper()
	return newSession(t, a.config(true))
}

func newSession(t *testing.T, cfg Config) *Session {
	t.Helper()
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs s until the test ends.
func run(t *testing.T, s *Session) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// runLoggedIn runs s until the test ends, and waits until it has logged in.
func runLoggedIn(t *testing.T, s *Session) *Login {
	t.Helper()
	run(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	l, err := s.Await(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wrappingTokenLive says whether a wrapping token can still be unwrapped (the lookup does not use it up).
func (a *approle) wrappingTokenLive(token string) bool {
	_, err := a.v.Root.Logical().Write("sys/wrapping/lookup", map[string]any{"token": token})
	return err == nil
}

func within(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	testkit.EventuallyEvery(t, d, 50*time.Millisecond, what, func() error {
		if !ok() {
			return errors.New("not yet")
		}
		return nil
	})
}

// policies are the policies of the token c acts with.
func policies(t *testing.T, c *vault.Client) []string {
	t.Helper()
	sec, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("the session's token does not work: %v", err)
	}
	p, _ := sec.TokenPolicies()
	return p
}

func TestAppRoleLogin(t *testing.T) {
	a := newAppRole(t, "20m")
	tests := []struct {
		name    string
		wrapped bool
	}{
		{"wrapped secret_id", true},
		{"plain secret_id", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delivered := a.plainSecretID(t, "order")
			if tt.wrapped {
				delivered = a.wrappedSecretID(t, "order")
			}
			devserver.WriteFile(t, a.secretIDFile, delivered)
			s := newSession(t, a.config(tt.wrapped))
			l := runLoggedIn(t, s)
			for name, c := range map[string]*vault.Client{"login": l.Client(), "session": s.Client()} {
				if p := policies(t, c); !slices.Contains(p, "self") {
					t.Errorf("%s client: logged in with policies %v; want the role's", name, p)
				}
			}
			if err := s.LoggedIn(context.Background()); err != nil {
				t.Errorf("LoggedIn: %v", err)
			}
			if tt.wrapped && a.wrappingTokenLive(delivered) {
				t.Error("the delivered wrapping token can still be unwrapped after the login used it")
			}
		})
	}
}

// A wrapping token that did not come from the role's secret-id endpoint, or that someone else unwrapped first,
// is refused.
func TestRefusesForeignOrUsedWrappingTokens(t *testing.T) {
	a := newAppRole(t, "20m")
	ar := a.session(t).method.(*appRole)
	ctx := context.Background()

	other := a.wrappedSecretID(t, "gateway")
	if _, err := ar.unwrap(ctx, other); err == nil || !strings.Contains(err.Error(), "not an AppRole secret_id of role") {
		t.Errorf("a secret_id of role gateway: %v; want it refused", err)
	}
	if !a.wrappingTokenLive(other) {
		t.Error("the refused wrapping token was used up; the check must come before the unwrap")
	}

	c := a.v.Client(t, a.v.RootToken)
	c.SetWrappingLookupFunc(func(string, string) string { return "1m" })
	arbitrary, err := c.Logical().Write("sys/wrapping/wrap", map[string]any{"secret_id": "chosen-by-someone-else"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ar.unwrap(ctx, arbitrary.WrapInfo.Token); err == nil {
		t.Error("a wrapping token made by sys/wrapping/wrap was accepted")
	}

	stolen := a.wrappedSecretID(t, "order")
	if _, err := a.v.Client(t, "").Logical().Unwrap(stolen); err != nil {
		t.Fatal(err)
	}
	if _, err := ar.unwrap(ctx, stolen); err == nil || !strings.Contains(err.Error(), "compromised") {
		t.Errorf("a wrapping token someone else unwrapped: %v; want a refusal that says so", err)
	}
}

// A session whose secret_id file holds another role's wrapped secret_id does not log in, and says why.
func TestDoesNotLogInWithAForeignWrappedSecretID(t *testing.T) {
	a := newAppRole(t, "20m")
	other := a.wrappedSecretID(t, "gateway")
	devserver.WriteFile(t, a.secretIDFile, other)
	s := a.session(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.login(ctx)
	if err == nil || !strings.Contains(err.Error(), `not an AppRole secret_id of role "order"`) {
		t.Fatalf("login with a wrapped secret_id of role gateway: %v; want it refused", err)
	}
	if strings.Contains(err.Error(), other) {
		t.Error("the error shows the wrapping token")
	}
}

// A new secret_id delivered while the service runs is unwrapped within seconds, not at the next login.
func TestNewSecretIDIsUnwrappedOnArrival(t *testing.T) {
	a := newAppRole(t, "20m")
	s := a.session(t)
	runLoggedIn(t, s)
	next := a.wrappedSecretID(t, "order")
	devserver.WriteFile(t, a.secretIDFile, next)
	within(t, 10*time.Second, "the new wrapping token is unwrapped", func() bool { return !a.wrappingTokenLive(next) })
	ar := s.method.(*appRole)
	ar.mu.Lock()
	from := ar.wrappedFrom
	ar.mu.Unlock()
	if from != next {
		t.Error("the session did not keep the new secret_id")
	}
}

// When Vault revokes the service's token, the session logs in again by itself with the secret_id it holds: at
// the next renewal, or at once when a user of the token reports it refused.
func TestLogsInAgainAfterItsTokenIsRevoked(t *testing.T) {
	tests := []struct {
		name     string
		tokenTTL string // 20m: no renewal within the test, so only the report can make it log in again
		report   func(s *Session, l *Login) error
	}{
		{"found at renewal", "3s", func(*Session, *Login) error { return nil }},
		{"reported on the login", "20m", func(_ *Session, l *Login) error { l.Refuse(); return nil }},
		{"reported on the session", "20m", func(s *Session, _ *Login) error { s.TokenRejected(); return nil }},
		{"relogin", "20m", func(s *Session, l *Login) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.Relogin(ctx, l)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAppRole(t, tt.tokenTTL)
			s := a.session(t)
			first := runLoggedIn(t, s)
			if err := a.v.Root.Auth().Token().RevokeTree(first.Client().Token()); err != nil {
				t.Fatal(err)
			}
			if err := tt.report(s, first); err != nil {
				t.Fatal(err)
			}
			select {
			case <-first.Done():
			case <-time.After(15 * time.Second):
				t.Fatal("the revoked login did not end")
			}
			var next *Login
			within(t, 15*time.Second, "a new login after the revocation", func() bool {
				next, _ = s.Current()
				return next != nil && next != first
			})
			if s.Client().Token() == first.Client().Token() {
				t.Error("the session's client still holds the revoked token")
			}
			for name, c := range map[string]*vault.Client{"login": next.Client(), "session": s.Client()} {
				if _, err := c.Auth().Token().LookupSelf(); err != nil {
					t.Errorf("%s client: the new token does not work: %v", name, err)
				}
			}
		})
	}
}

// Revoke gives the token back: it no longer works.
func TestRevoke(t *testing.T) {
	a := newAppRole(t, "20m")
	if err := a.v.Root.Sys().PutPolicy("self", `path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	s := a.session(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if err := s.WaitLoggedIn(wctx); err != nil {
		t.Fatal(err)
	}
	token := s.Client().Token()
	cancel()
	<-done
	if err := s.LoggedIn(context.Background()); err == nil {
		t.Error("logged in after Run returned")
	}
	if err := s.Revoke(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.v.Client(t, token).Auth().Token().LookupSelf(); !IsForbidden(err) {
		t.Errorf("the revoked token: %v; want it refused", err)
	}
}
