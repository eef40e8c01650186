package vaultauth

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
)

// serviceAccount is a Kubernetes service account as the fake API server knows it.
type serviceAccount struct{ namespace, name, uid string }

// kubeAPI answers Kubernetes' TokenReview API as a cluster would: a token it issued (and has not revoked) is
// authenticated as its service account, anything else is not.
type kubeAPI struct {
	srv      *httptest.Server
	reviewer string // the bearer token Vault must present

	mu       sync.Mutex
	issued   map[string]serviceAccount
	reviewed []string
}

func newKubeAPI(t *testing.T) *kubeAPI {
	t.Helper()
	k := &kubeAPI{reviewer: "token-reviewer-" + randomString(t), issued: map[string]serviceAccount{}}
	k.srv = httptest.NewTLSServer(http.HandlerFunc(k.serveTokenReview))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *kubeAPI) serveTokenReview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+k.reviewer {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`))
		return
	}
	var review struct {
		Spec struct {
			Token     string   `json:"token"`
			Audiences []string `json:"audiences"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	sa, ok := k.issued[review.Spec.Token]
	k.reviewed = append(k.reviewed, review.Spec.Token)
	k.mu.Unlock()
	status := map[string]any{"authenticated": false}
	if ok {
		status = map[string]any{
			"authenticated": true,
			"user": map[string]any{
				"username": "system:serviceaccount:" + sa.namespace + ":" + sa.name,
				"uid":      sa.uid,
				"groups":   []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.namespace, "system:authenticated"},
			},
			"audiences": review.Spec.Audiences,
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
		"spec": review.Spec, "status": status,
	})
}

// issue makes a projected service-account token (a JWT) for sa that the API server vouches for.
func (k *kubeAPI) issue(t *testing.T, sa serviceAccount) string {
	t.Helper()
	jwt := signedJWT(t, sa)
	k.mu.Lock()
	k.issued[jwt] = sa
	k.mu.Unlock()
	return jwt
}

// lastReviewed is the token Vault last asked about.
func (k *kubeAPI) lastReviewed() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.reviewed) == 0 {
		return ""
	}
	return k.reviewed[len(k.reviewed)-1]
}

// signedJWT is a token shaped like the kubelet's projected ones. Vault checks its claims and asks the API
// server whether it is genuine; without configured keys it does not check the signature, but it must be there.
func signedJWT(t *testing.T, sa serviceAccount) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	unsigned := enc(map[string]any{"alg": "RS256", "kid": "test"}) + "." + enc(map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local",
		"sub": "system:serviceaccount:" + sa.namespace + ":" + sa.name,
		"aud": []string{"vault"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      sa.namespace,
			"pod":            map[string]any{"name": sa.name + "-7d9f8b6c5d-x2x4q", "uid": "pod-" + sa.uid},
			"serviceaccount": map[string]any{"name": sa.name, "uid": sa.uid},
		},
	})
	sum := sha256.Sum256([]byte(unsigned))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func randomString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// kubernetesVault is a dev Vault with the Kubernetes auth method at mount, trusting api, and a role "order" for
// the service account pizza/order.
func kubernetesVault(t *testing.T, api *kubeAPI, mount string) *devserver.Vault {
	t.Helper()
	v := devserver.StartVault(t)
	root := v.Root
	if err := root.Sys().EnableAuthWithOptions(mount, &vault.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.srv.Certificate().Raw})
	if _, err := root.Logical().Write("auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      api.srv.URL,
		"kubernetes_ca_cert":   string(caPEM),
		"token_reviewer_jwt":   api.reviewer,
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
	api := newKubeAPI(t)
	const mount = "kubernetes"
	v := kubernetesVault(t, api, mount)
	order := serviceAccount{namespace: "pizza", name: "order", uid: "0b6d5a7e-3c1f-4f0e-9a43-6f1f2c3d4e5f"}
	tests := []struct {
		name  string
		role  string
		token func(t *testing.T) string // the token file's content; "" leaves no file
		err   string                    // "" for a login
	}{
		{"the pod's service account", "order", func(t *testing.T) string { return api.issue(t, order) }, ""},
		{"a token the cluster did not issue", "order", func(t *testing.T) string { return signedJWT(t, order) },
			"Vault refused the service-account token"},
		{"another namespace's service account", "order", func(t *testing.T) string {
			return api.issue(t, serviceAccount{namespace: "kitchen", name: "order", uid: "5d1e2f3a-0000-4000-8000-000000000001"})
		}, "namespace not authorized"},
		{"another service account", "order", func(t *testing.T) string {
			return api.issue(t, serviceAccount{namespace: "pizza", name: "gateway", uid: "5d1e2f3a-0000-4000-8000-000000000002"})
		}, "service account name not authorized"},
		{"a role that does not exist", "gateway", func(t *testing.T) string { return api.issue(t, order) }, `invalid role name "gateway"`},
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
	api := newKubeAPI(t)
	const mount = "k8s-pizza"
	v := kubernetesVault(t, api, mount)
	order := serviceAccount{namespace: "pizza", name: "order", uid: "0b6d5a7e-3c1f-4f0e-9a43-6f1f2c3d4e5f"}
	tokenFile := filepath.Join(t.TempDir(), "token")
	jwt := api.issue(t, order)
	devserver.WriteFile(t, tokenFile, jwt)
	logs := &syncBuffer{}
	s, err := New(Config{Addr: v.Addr, CACert: v.CACert, AuthMethod: MethodKubernetes, KubernetesRole: "order",
		KubernetesTokenFile: tokenFile, KubernetesMount: mount, Timeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	first := runLoggedIn(t, s)

	rotated := api.issue(t, order)
	devserver.WriteFile(t, tokenFile, rotated)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	next, err := s.Relogin(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if api.lastReviewed() != rotated {
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
