package vaultauth

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit/tokenreview"
)

// kubernetesVault is a dev Vault with the Kubernetes auth method at mount, trusting api, and a role "order" for
// the service account pizza/order.
func kubernetesVault(t *testing.T, api *tokenreview.Server, mount string) *devserver.Vault {
	t.Helper()
	v := devserver.StartVault(t)
	root := v.Root
	if err := root.Sys().EnableAuthWithOptions(mount, &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      api.URL,
		"kubernetes_ca_cert":   api.CAPEM,
		"token_reviewer_jwt":   api.Reviewer,
		"disable_local_ca_jwt": true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().PutPolicy("order", `path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/"+mount+"/role/order", map[string]any{
		"bound_service_account_names":      "order",
		"bound_service_account_namespaces": "pizza",
		"audience":                         "vault",
		"token_policies":                   "order",
		"token_ttl":                        "20m",
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKubernetesLogin(t *testing.T) {
	api := tokenreview.Start(t)
	const mount = "kubernetes"
	v := kubernetesVault(t, api, mount)
	order := tokenreview.ServiceAccount{Namespace: "pizza", Name: "order", UID: "0b6d5a7e-3c1f-4f0e-9a43-6f1f2c3d4e5f"}
	tests := []struct {
		name  string
		role  string
		token func(t *testing.T) string // the token file's content; "" leaves no file
		err   string                    // "" for a login
	}{
		{"the pod's service account", "order", func(t *testing.T) string { return api.Token(t, order, "vault") }, ""},
		{"a token the cluster did not issue", "order", func(t *testing.T) string { return tokenreview.Unvouched(t, order, "vault") },
			"Vault refused the service-account token"},
		{"another namespace's service account", "order", func(t *testing.T) string {
			return api.Token(t, tokenreview.ServiceAccount{Namespace: "kitchen", Name: "order", UID: "5d1e2f3a-0000-4000-8000-000000000001"}, "vault")
		}, "namespace not authorized"},
		{"another service account", "order", func(t *testing.T) string {
			return api.Token(t, tokenreview.ServiceAccount{Namespace: "pizza", Name: "gateway", UID: "5d1e2f3a-0000-4000-8000-000000000002"}, "vault")
		}, "service account name not authorized"},
		{"a role that does not exist", "gateway", func(t *testing.T) string { return api.Token(t, order, "vault") }, `invalid role name "gateway"`},
		{"not a JWT", "order", func(*testing.T) string { return "not-a-jwt" }, "Vault refused the service-account token"},
		{"no token file", "order", func(*testing.T) string { return "" }, "kubernetes service-account token: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tokenFile := filepath.Join(t.TempDir(), "token")
			jwt := tt.token(t)
			if jwt != "" {
				devserver.WriteFile(t, tokenFile, jwt)
			}
			s := newSession(t, Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: MethodKubernetes, KubernetesRole: tt.role,
				KubernetesTokenFile: tokenFile, KubernetesMount: mount, Timeout: 5 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			auth, err := s.login(ctx)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("login: %v; want an error saying %q", err, tt.err)
				}
				if jwt != "" && strings.Contains(err.Error(), jwt) {
					t.Error("the error shows the service-account token")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if p := policies(t, v.Client(t, auth.Auth.ClientToken)); !slices.Contains(p, "order") {
				t.Errorf("logged in with policies %v; want the role's", p)
			}
			if got := auth.Auth.Metadata["service_account_namespace"] + "/" + auth.Auth.Metadata["service_account_name"]; got != "pizza/order" {
				t.Errorf("logged in as %s; want pizza/order", got)
			}
		})
	}
}

// The kubelet rotates projected tokens: each login reads the token file again, and a rotated token works.
func TestKubernetesLoginReadsTheRotatedToken(t *testing.T) {
	api := tokenreview.Start(t)
	const mount = "k8s-pizza"
	v := kubernetesVault(t, api, mount)
	order := tokenreview.ServiceAccount{Namespace: "pizza", Name: "order", UID: "0b6d5a7e-3c1f-4f0e-9a43-6f1f2c3d4e5f"}
	tokenFile := filepath.Join(t.TempDir(), "token")
	jwt := api.Token(t, order, "vault")
	devserver.WriteFile(t, tokenFile, jwt)
	logs := &syncBuffer{}
	s, err := New(Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: MethodKubernetes, KubernetesRole: "order",
		KubernetesTokenFile: tokenFile, KubernetesMount: mount, Timeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	first := runLoggedIn(t, s)

	rotated := api.Token(t, order, "vault")
	devserver.WriteFile(t, tokenFile, rotated)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	next, err := s.Relogin(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if api.LastReviewed() != rotated {
		t.Error("the second login did not present the rotated token")
	}
	if p := policies(t, next.Client()); !slices.Contains(p, "order") {
		t.Errorf("logged in again with policies %v; want the role's", p)
	}
	out := logs.String()
	if !strings.Contains(out, "logged in to vault") {
		t.Fatalf("no login logged; the test would not see a secret either:\n%s", out)
	}
	for name, secret := range map[string]string{"first JWT": jwt, "rotated JWT": rotated,
		"first token": first.Client().Token(), "second token": next.Client().Token()} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs hold the %s", name)
		}
	}
}

// syncBuffer is a log destination goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
