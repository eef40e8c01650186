// Package tokenreview is the tests' one stand-in for a Kubernetes API server's TokenReview API, which Vault's
// Kubernetes auth method asks whether a service-account token is genuine: it mints tokens shaped like the
// kubelet's projected ones and vouches for those alone.
package tokenreview

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Path is where the API server answers token reviews.
const Path = "/apis/authentication.k8s.io/v1/tokenreviews"

// ServiceAccount is a Kubernetes service account as the API server knows it.
type ServiceAccount struct {
	Namespace, Name string
	UID             string // a random one when empty
}

// Server answers token reviews over TLS as a cluster's API server does: a token it minted is authenticated as its
// service account, for the audience it was minted for, when the reviewer presents its own bearer token; any
// other token is not authenticated, and any other reviewer is refused.
type Server struct {
	URL          string // https://127.0.0.1:port, Vault's kubernetes_host
	CAPEM        string // the server's certificate, Vault's kubernetes_ca_cert
	CAFile       string // CAPEM in a 0600 file
	Reviewer     string // the bearer token the reviewer must present, Vault's token_reviewer_jwt
	ReviewerFile string // Reviewer in a 0600 file

	key *rsa.PrivateKey

	mu       sync.Mutex
	minted   map[string]minted
	reviewed []string
}

type minted struct {
	sa       ServiceAccount
	audience string
}

// Start serves a fresh API server until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{key: newKey(t), minted: map[string]minted{}, Reviewer: "token-reviewer-" + rand.Text()}
	srv := httptest.NewTLSServer(http.HandlerFunc(s.review))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	s.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	dir := t.TempDir()
	s.CAFile, s.ReviewerFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "reviewer-token")
	for path, content := range map[string]string{s.CAFile: s.CAPEM, s.ReviewerFile: s.Reviewer} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Token mints a projected service-account token for sa and audience that the server vouches for.
func (s *Server) Token(t testing.TB, sa ServiceAccount, audience string) string {
	t.Helper()
	if sa.UID == "" {
		sa.UID = rand.Text()
	}
	jwt := signedJWT(t, s.key, sa, audience)
	s.mu.Lock()
	s.minted[jwt] = minted{sa: sa, audience: audience}
	s.mu.Unlock()
	return jwt
}

// Unvouched is a token shaped like Token's, signed by a key of its own, that no server vouches for.
func Unvouched(t testing.TB, sa ServiceAccount, audience string) string {
	t.Helper()
	if sa.UID == "" {
		sa.UID = rand.Text()
	}
	return signedJWT(t, newKey(t), sa, audience)
}

// LastReviewed is the token the server was last asked about ("" for none).
func (s *Server) LastReviewed() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reviewed) == 0 {
		return ""
	}
	return s.reviewed[len(s.reviewed)-1]
}

func (s *Server) review(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+s.Reviewer {
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
	s.mu.Lock()
	tok, ok := s.minted[review.Spec.Token]
	s.reviewed = append(s.reviewed, review.Spec.Token)
	s.mu.Unlock()
	status := map[string]any{"authenticated": false}
	// Like the API server, a token is good only for the audiences it was minted for (any, when none are asked).
	if ok && (len(review.Spec.Audiences) == 0 || slices.Contains(review.Spec.Audiences, tok.audience)) {
		status = map[string]any{
			"authenticated": true,
			"user": map[string]any{
				"username": "system:serviceaccount:" + tok.sa.Namespace + ":" + tok.sa.Name,
				"uid":      tok.sa.UID,
				"groups":   []string{"system:serviceaccounts", "system:serviceaccounts:" + tok.sa.Namespace, "system:authenticated"},
			},
			"audiences": []string{tok.audience},
		}
	}
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "spec": review.Spec, "status": status,
	})
}

// signedJWT is a token with the kubelet's claims. Vault checks the claims and asks the API server whether the
// token is genuine; without configured keys it does not check the signature, but there must be one.
func signedJWT(t testing.TB, key *rsa.PrivateKey, sa ServiceAccount, audience string) string {
	t.Helper()
	now := time.Now()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	unsigned := enc(map[string]any{"alg": "RS256", "typ": "JWT", "kid": "test"}) + "." + enc(map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local",
		"sub": "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		"aud": []string{audience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      sa.Namespace,
			"pod":            map[string]any{"name": sa.Name + "-7d9f8b6c5d-x2x4q", "uid": "pod-" + sa.UID},
			"serviceaccount": map[string]any{"name": sa.Name, "uid": sa.UID},
		},
	})
	sum := sha256.Sum256([]byte(unsigned))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func newKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
