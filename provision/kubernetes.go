package provision

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// KubernetesConfig is how Vault's Kubernetes auth method reaches the cluster's API to review service-account
// tokens. The defaults fit a Vault that runs in the cluster (deploy/kubernetes talks to vault.vault.svc): Vault
// then reviews tokens with its own service account (bound to system:auth-delegator) and trusts its own pod's CA.
type KubernetesConfig struct {
	Host   string `conf:"default:https://kubernetes.default.svc,help:the Kubernetes API as Vault reaches it"`
	CACert string `conf:"help:CA file of the Kubernetes API (empty: a Vault in a pod uses its service account's CA)"`
	// ReviewerJWTFile is for a Vault outside the cluster: the token of a service account bound to
	// system:auth-delegator. The pods' own tokens cannot stand in, because their audience is Vault's.
	ReviewerJWTFile string `conf:"help:file with a token reviewer's JWT (empty: a Vault in a pod uses its own service account)"`
}

// kubernetesMount is where the Kubernetes auth method lives; the services' default (*_VAULT_KUBERNETES_MOUNT) and
// the operator policy's exact paths both name it.
const kubernetesMount = "kubernetes"

// KubernetesRole is one role of Vault's Kubernetes auth method, as written in vault/kubernetes/<name>.json: the
// body of `vault write auth/kubernetes/role/<name>`. Only these fields are allowed, so a misspelt one fails here
// instead of being ignored by Vault.
type KubernetesRole struct {
	Name                          string   `json:"-"`
	BoundServiceAccountNames      []string `json:"bound_service_account_names"`
	BoundServiceAccountNamespaces []string `json:"bound_service_account_namespaces"`
	Audience                      string   `json:"audience,omitempty"`
	TokenPolicies                 []string `json:"token_policies"`
	TokenNoDefaultPolicy          bool     `json:"token_no_default_policy"`
	TokenPeriod                   string   `json:"token_period,omitempty"`
	TokenTTL                      string   `json:"token_ttl,omitempty"`
	TokenMaxTTL                   string   `json:"token_max_ttl,omitempty"`
}

// ReadKubernetesRoles reads and checks every role file under repo/vault/kubernetes, by name.
func ReadKubernetesRoles(repo string) ([]KubernetesRole, error) {
	files, err := filepath.Glob(filepath.Join(repo, "vault", "kubernetes", "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no Kubernetes auth roles under %s/vault/kubernetes (%v)", repo, err)
	}
	var roles []KubernetesRole
	for _, f := range files {
		r, err := readKubernetesRole(f)
		if err != nil {
			return nil, err
		}
		for _, policy := range r.TokenPolicies {
			if _, err := os.Stat(filepath.Join(repo, "vault", "policies", policy+".hcl")); err != nil || policy == "operator" {
				return nil, fmt.Errorf("%s: policy %q is no service policy in vault/policies", f, policy)
			}
		}
		roles = append(roles, r)
	}
	return roles, nil
}

func readKubernetesRole(file string) (KubernetesRole, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return KubernetesRole{}, err
	}
	r := KubernetesRole{Name: strings.TrimSuffix(filepath.Base(file), ".json")}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return KubernetesRole{}, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return KubernetesRole{}, fmt.Errorf("%s: more than one JSON object", file)
	}
	if err := r.valid(); err != nil {
		return KubernetesRole{}, fmt.Errorf("%s: %w", file, err)
	}
	return r, nil
}

// valid refuses what would let more pods in than the file seems to say: an empty binding means nothing to
// Vault's API but is a mistake here, and "*" (or a glob) binds every service account or namespace.
func (r KubernetesRole) valid() error {
	for field, values := range map[string][]string{
		"bound_service_account_names":      r.BoundServiceAccountNames,
		"bound_service_account_namespaces": r.BoundServiceAccountNamespaces,
		"token_policies":                   r.TokenPolicies,
	} {
		if len(values) == 0 {
			return fmt.Errorf("%s is empty", field)
		}
		if slices.ContainsFunc(values, func(v string) bool { return v == "" || strings.ContainsAny(v, "*, ") }) {
			return fmt.Errorf("%s %q: want exact names, no wildcards", field, values)
		}
	}
	if !r.TokenNoDefaultPolicy {
		return errors.New("token_no_default_policy must be true: a service's token carries its own policy only")
	}
	if r.TokenPeriod == "" && r.TokenMaxTTL == "" {
		return errors.New("neither token_period nor token_max_ttl: tokens would live as long as the mount allows")
	}
	return nil
}

// data is the role as Vault's API takes it.
func (r KubernetesRole) data() (map[string]any, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// KubernetesAuth sets up Vault's Kubernetes auth method, by which pods log in with their service-account tokens.
type KubernetesAuth struct {
	s *Session
}

// NewKubernetesAuth returns the Kubernetes auth unit on s.
func NewKubernetesAuth(s *Session) *KubernetesAuth {
	return &KubernetesAuth{s: s}
}

// Configure enables Vault's Kubernetes auth method (if missing), points it at the cluster's API and writes
// every role of vault/kubernetes. The operator runs it once against the cluster's Vault, after bootstrap; it is
// idempotent, and the config and roles it writes replace what was there.
func (ka *KubernetesAuth) Configure(ctx context.Context) error {
	roles, err := ReadKubernetesRoles(ka.s.cfg.Repo)
	if err != nil {
		return err
	}
	k := ka.s.cfg.Kubernetes
	config := map[string]any{"kubernetes_host": k.Host}
	if k.CACert != "" {
		pem, err := os.ReadFile(k.CACert)
		if err != nil {
			return fmt.Errorf("kubernetes CA: %w", err)
		}
		config["kubernetes_ca_cert"] = string(pem)
	}
	if k.ReviewerJWTFile != "" {
		jwt, err := readSecretFile(k.ReviewerJWTFile)
		if err != nil {
			return fmt.Errorf("kubernetes token reviewer: %w", err)
		}
		config["token_reviewer_jwt"] = jwt
	}

	c, cancel := ka.s.ctx(ctx)
	auths, err := ka.s.vault.Sys().ListAuthWithContext(c)
	if err == nil {
		if _, ok := auths[kubernetesMount+"/"]; !ok {
			err = ka.s.vault.Sys().EnableAuthWithOptionsWithContext(c, kubernetesMount, &vault.EnableAuthOptions{Type: "kubernetes"})
		}
	}
	cancel()
	if err != nil {
		return fmt.Errorf("enable auth/%s: %w", kubernetesMount, err)
	}
	if err := ka.s.write(ctx, "auth/"+kubernetesMount+"/config", config); err != nil {
		return err
	}
	var names []string
	for _, r := range roles {
		data, err := r.data()
		if err != nil {
			return err
		}
		if err := ka.s.write(ctx, "auth/"+kubernetesMount+"/role/"+r.Name, data); err != nil {
			return err
		}
		names = append(names, r.Name)
	}
	ka.s.logger.Info("kubernetes auth ready", "mount", kubernetesMount, "kubernetes_host", k.Host,
		"ca", cmp.Or(k.CACert, "vault's own pod"), "reviewer", cmp.Or(k.ReviewerJWTFile, "vault's own service account"),
		"roles", strings.Join(names, ","))
	return nil
}
