package tokenreview

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
)

// The server vouches for the tokens it minted, for their own audience, to its own reviewer only.
func TestReview(t *testing.T) {
	s := Start(t)
	order := ServiceAccount{Namespace: "pizza", Name: "order", UID: "uid-order"}
	minted := s.Token(t, order, "vault")
	tests := []struct {
		name      string
		reviewer  string
		token     string
		audiences []string
		status    int
		user      string // "" when not authenticated
	}{
		{"minted, its audience", s.Reviewer, minted, []string{"vault"}, 201, "system:serviceaccount:pizza:order"},
		{"minted, no audience asked", s.Reviewer, minted, nil, 201, "system:serviceaccount:pizza:order"},
		{"minted, another audience", s.Reviewer, minted, []string{"https://kubernetes.default.svc"}, 201, ""},
		{"not minted here", s.Reviewer, Unvouched(t, order, "vault"), []string{"vault"}, 201, ""},
		{"another reviewer", "someone-else", minted, []string{"vault"}, 401, ""},
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(s.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("CA file: %v", err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
				"spec": map[string]any{"token": tt.token, "audiences": tt.audiences}})
			req, _ := http.NewRequest("POST", s.URL+Path, strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+tt.reviewer)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d; want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 201 {
				return
			}
			var review struct {
				Status struct {
					Authenticated bool
					User          struct{ Username, UID string }
				}
			}
			if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
				t.Fatal(err)
			}
			if got := review.Status.User.Username; review.Status.Authenticated != (tt.user != "") || got != tt.user {
				t.Errorf("authenticated %v as %q; want %q", review.Status.Authenticated, got, tt.user)
			}
			if tt.user != "" && review.Status.User.UID != order.UID {
				t.Errorf("uid %q; want %q", review.Status.User.UID, order.UID)
			}
			if s.LastReviewed() != tt.token {
				t.Error("LastReviewed is not the token just reviewed")
			}
		})
	}
	if b, err := os.ReadFile(s.ReviewerFile); err != nil || string(b) != s.Reviewer {
		t.Errorf("reviewer file: %q, %v", b, err)
	}
}
