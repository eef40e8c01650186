package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/internal/testkit/tokenreview"
)

// The role files bind each service's own service account, in the namespace of deploy/kubernetes, to the policy
// of the same name.
func TestKubernetesRoleFiles(t *testing.T) {
	roles, err := ReadKubernetesRoles("..")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range roles {
		names = append(names, r.Name)
		if !slices.Equal(r.BoundServiceAccountNames, []string{r.Name}) || !slices.Equal(r.TokenPolicies, []string{r.Name}) ||
			!slices.Equal(r.BoundServiceAccountNamespaces, []string{"pizza"}) || r.Audience != "vault" {
			t.Errorf("role %s: %+v; want service account and policy %[1]s in namespace pizza, audience vault", r.Name, r)
		}
	}
	slices.Sort(names)
	if want := []string{"gateway", "order", "order-migrate"}; !slices.Equal(names, want) {
		t.Errorf("roles %v; want %v", names, want)
	}
}

func TestKubernetesRoleFilesRefused(t *testing.T) {
	const good = `"bound_service_account_names": ["order"], "bound_service_account_namespaces": ["pizza"],
		"token_policies": ["order"], "token_no_default_policy": true, "token_period": "20m"`
	for _, tt := range []struct {
		name, body, want string
	}{
		{"valid", `{` + good + `}`, ""},
		{"misspelt field", `{` + good + `, "audiense": "vault"}`, "unknown field"},
		{"wildcard namespace", strings.Replace(`{`+good+`}`, `["pizza"]`, `["*"]`, 1), "wildcards"},
		{"glob name", strings.Replace(`{`+good+`}`, `["order"]`, `["ord*"]`, 1), "wildcards"},
		{"no namespace", strings.Replace(`{`+good+`}`, `["pizza"]`, `[]`, 1), "bound_service_account_namespaces is empty"},
		{"unknown policy", strings.Replace(`{`+good+`}`, `"token_policies": ["order"]`, `"token_policies": ["root"]`, 1), "no service policy"},
		{"operator policy", strings.Replace(`{`+good+`}`, `"token_policies": ["order"]`, `"token_policies": ["operator"]`, 1), "no service policy"},
		{"default policy", strings.Replace(`{`+good+`}`, `"token_no_default_policy": true`, `"token_no_default_policy": false`, 1), "token_no_default_policy"},
		{"unbounded token", strings.Replace(`{`+good+`}`, `, "token_period": "20m"`, ``, 1), "neither token_period"},
		{"two objects", `{` + good + `} {}`, "more than one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repo := t.TempDir()
			for _, dir := range []string{"kubernetes", "policies"} {
				if err := os.MkdirAll(filepath.Join(repo, "vault", dir), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, policy := range []string{"order", "operator"} {
				writeTestFile(t, filepath.Join(repo, "vault", "policies", policy+".hcl"), "")
			}
			writeTestFile(t, filepath.Join(repo, "vault", "kubernetes", "order.json"), tt.body)
			_, err := ReadKubernetesRoles(repo)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("err %v; want %q", err, tt.want)
			}
		})
	}
}

// meshctl kubernetes-auth, run twice on a real Vault with a root token generated for each run from the unseal
// key (the operator's token may not enable auth methods), leaves the auth method configured and the roles as the
// files say. Vault then reviews tokens with a stand-in of the Kubernetes TokenReview API, so each pod's
// service-account token logs in as its own role only.
func TestKubernetesAuthAgainstVault(t *testing.T) {
	v := devserver.StartVault(t)
	kube := tokenreview.Start(t)
	ctx := context.Background()

	cfg := Config{Repo: "..", Timeout: 15 * time.Second}
	cfg.Vault.Addr, cfg.Vault.CACert, cfg.Vault.StateDir = v.Addr, v.CACert, t.TempDir()
	cfg.Kubernetes = KubernetesConfig{Host: kube.URL, CACert: kube.CAFile, ReviewerJWTFile: kube.ReviewerFile}
	operatorToken(t, v, cfg)
	devUnsealKey(t, v, cfg)

	// The operator's token at rest is refused: enabling an auth method is provisioning.
	s, err := NewSession(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := NewKubernetesAuth(s).Configure(ctx); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("kubernetes-auth with the operator token: %v; want permission denied", err)
	}
	for run := 1; run <= 2; run++ {
		s, err := NewSession(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		end, err := s.BeginProvisioning(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = NewKubernetesAuth(s).Configure(ctx)
		end()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}

	conf, err := v.Root.Logical().Read("auth/kubernetes/config")
	if err != nil || conf == nil {
		t.Fatalf("config: %v %v", conf, err)
	}
	if conf.Data["kubernetes_host"] != kube.URL || strings.TrimSpace(fmt.Sprint(conf.Data["kubernetes_ca_cert"])) != strings.TrimSpace(kube.CAPEM) {
		t.Errorf("config %v; want host %s and the API's CA", conf.Data, kube.URL)
	}
	files, err := ReadKubernetesRoles("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range files {
		sec, err := v.Root.Logical().Read("auth/kubernetes/role/" + want.Name)
		if err != nil || sec == nil {
			t.Fatalf("role %s: %v %v", want.Name, sec, err)
		}
		for field, values := range map[string][]string{
			"bound_service_account_names":      want.BoundServiceAccountNames,
			"bound_service_account_namespaces": want.BoundServiceAccountNamespaces,
			"token_policies":                   want.TokenPolicies,
		} {
			if got := strings.Fields(strings.Trim(fmt.Sprint(sec.Data[field]), "[]")); !slices.Equal(got, values) {
				t.Errorf("role %s: %s = %v; the file says %v", want.Name, field, got, values)
			}
		}
		if audience, _ := sec.Data["audience"].(string); audience != want.Audience || sec.Data["token_no_default_policy"] != true {
			t.Errorf("role %s: audience %v, token_no_default_policy %v; the file says %q, true", want.Name,
				sec.Data["audience"], sec.Data["token_no_default_policy"], want.Audience)
		}
	}

	type login struct {
		name                    string
		role                    string
		namespace, sa, audience string
		ok                      bool
	}
	// Each service account of the namespace logs in as its own role and as no other.
	var logins []login
	for _, role := range []string{"order", "gateway", "order-migrate"} {
		for _, sa := range []string{"order", "gateway", "order-migrate", "default"} {
			logins = append(logins, login{sa + " as " + role, role, "pizza", sa, "vault", sa == role})
		}
	}
	logins = append(logins,
		login{"order from another namespace", "order", "shop", "order", "vault", false},
		login{"order with its Kubernetes API token", "order", "pizza", "order", "https://kubernetes.default.svc.cluster.local", false},
		login{"order-migrate with its Kubernetes API token", "order-migrate", "pizza", "order-migrate", "https://kubernetes.default.svc.cluster.local", false},
	)
	for _, tt := range logins {
		t.Run(tt.name, func(t *testing.T) {
			jwt := kube.Token(t, tokenreview.ServiceAccount{Namespace: tt.namespace, Name: tt.sa}, tt.audience)
			sec, err := v.Client(t, "").Logical().Write("auth/kubernetes/login", map[string]any{"role": tt.role, "jwt": jwt})
			if !tt.ok {
				if err == nil {
					t.Fatalf("logged in as %s with %s/%s's token (audience %s)", tt.role, tt.namespace, tt.sa, tt.audience)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sec.Auth.Policies; !slices.Equal(got, []string{tt.role}) {
				t.Errorf("token policies %v; want only %s", got, tt.role)
			}
			if tt.role == "order-migrate" && sec.Auth.LeaseDuration > int((15*time.Minute).Seconds()) {
				t.Errorf("order-migrate token lives %ds; want at most 15m", sec.Auth.LeaseDuration)
			}
		})
	}
}

// operatorToken writes the operator policy and an operator token, as the first bootstrap leaves them.
func operatorToken(t *testing.T, v *devserver.Vault, cfg Config) {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join(cfg.Repo, "vault", "policies", "operator.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Root.Sys().PutPolicy("operator", string(rules)); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Root.Auth().Token().CreateOrphan(&vault.TokenCreateRequest{
		Policies: []string{"operator"}, NoDefaultPolicy: true, Period: "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSecretFile(filepath.Join(cfg.Vault.StateDir, "operator-token"), sec.Auth.ClientToken); err != nil {
		t.Fatal(err)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// devUnsealKey writes the dev server's unseal key (its log prints it, in a banner that can come a moment after
// the server answers) where meshctl reads it.
func devUnsealKey(t *testing.T, v *devserver.Vault, cfg Config) {
	t.Helper()
	var key string
	testkit.Eventually(t, 10*time.Second, "the dev Vault's log shows its unseal key", func() error {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(v.CACert), "vault.log"))
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[:len(lines)-1] { // the last one may be half written
			if _, k, ok := strings.Cut(line, "Unseal Key: "); ok && strings.TrimSpace(k) != "" {
				key = strings.TrimSpace(k)
				return nil
			}
		}
		return errors.New("no unseal key in the log yet")
	})
	if err := writeSecretFile(filepath.Join(cfg.Vault.StateDir, "unseal-key"), key); err != nil {
		t.Fatal(err)
	}
}
