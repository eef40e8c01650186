package vaultauth

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// The login methods AuthMethod names.
const (
	MethodAppRole    = "approle"
	MethodKubernetes = "kubernetes"
)

// Config says how to reach Vault and how to log in. Services read it under their prefix (ORDER_VAULT_…,
// GATEWAY_VAULT_…), so the field names are the environment's names: renaming one breaks deployments.
type Config struct {
	Addr string `conf:"default:https://127.0.0.1:8200"`
	// CACert is the CA that signed Vault's listener certificate; empty trusts the system's roots.
	CACert string `conf:"help:CA certificate file to verify Vault's TLS certificate"`
	// AuthMethod is approle (role_id and secret_id files an operator delivers) or kubernetes (the pod's
	// service-account token).
	AuthMethod string `conf:"default:approle,help:how to log in to Vault: approle or kubernetes"`

	RoleIDFile   string `conf:"help:file holding the AppRole role_id"`
	SecretIDFile string `conf:"help:file holding the AppRole secret_id (or a response-wrapping token for it)"`
	// SecretIDWrapped says the secret_id file holds a response-wrapping token, unwrapped once per new file, as
	// soon as the file appears (the wrapping token lives minutes).
	SecretIDWrapped bool `conf:"default:true"`
	// Role is the AppRole's name: a wrapped secret_id must have been created by its secret-id endpoint.
	Role string `conf:"help:AppRole name the wrapped secret_id must come from"`

	KubernetesRole string `conf:"help:Vault role of the Kubernetes auth method to log in as"`
	// KubernetesTokenFile is read at every login: projected service-account tokens are rotated by the kubelet.
	KubernetesTokenFile string `conf:"default:/var/run/secrets/kubernetes.io/serviceaccount/token,help:file holding the pod's service-account token"`
	KubernetesMount     string `conf:"default:kubernetes,help:path the Kubernetes auth method is mounted at"`

	// Timeout bounds each call to Vault.
	Timeout time.Duration `conf:"default:10s"`
}

// Enabled says whether Vault is configured at all: an AppRole role_id file, or another login method named.
// Without it a service runs without Vault (development).
func (c Config) Enabled() bool {
	return c.method() != MethodAppRole || c.RoleIDFile != ""
}

func (c Config) method() string { return cmp.Or(c.AuthMethod, MethodAppRole) }

// validate reports a configuration the service cannot log in with.
func (c Config) validate() error {
	if c.Timeout <= 0 {
		return errors.New("vault: the timeout must be positive")
	}
	switch c.method() {
	case MethodAppRole:
		if c.RoleIDFile == "" || c.SecretIDFile == "" {
			return errors.New("vault: approle needs the role_id and secret_id files")
		}
	case MethodKubernetes:
		if c.KubernetesRole == "" || c.KubernetesTokenFile == "" || c.KubernetesMount == "" {
			return errors.New("vault: kubernetes needs the role, the service-account token file and the mount")
		}
	default:
		return fmt.Errorf("vault: unknown auth method %q (want %s or %s)", c.AuthMethod, MethodAppRole, MethodKubernetes)
	}
	return nil
}

// NewClient returns a client of the Vault at cfg.Addr, verifying its certificate with cfg.CACert, whose every
// request is bounded by cfg.Timeout. It holds no token, even when VAULT_TOKEN is set: an operator's token in the
// environment must never become the service's.
func NewClient(cfg Config) (*vault.Client, error) {
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	vc.Address = cfg.Addr
	vc.Timeout = cfg.Timeout
	if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert}); err != nil {
		return nil, fmt.Errorf("vault TLS: %w", err)
	}
	// DefaultConfig honours VAULT_SKIP_VERIFY from the environment; the service always verifies Vault.
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		t.TLSClientConfig.InsecureSkipVerify = false
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	client.ClearToken()
	return client, nil
}
