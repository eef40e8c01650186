package vaultauth

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConfig(t *testing.T) {
	approle := Config{Addr: "https://127.0.0.1:8200", AuthMethod: "approle", RoleIDFile: "/r", SecretIDFile: "/s", Timeout: time.Second}
	k8s := Config{Addr: "https://127.0.0.1:8200", AuthMethod: "kubernetes", KubernetesRole: "order",
		KubernetesTokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token", KubernetesMount: "kubernetes", Timeout: time.Second}
	with := func(c Config, change func(*Config)) Config { change(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		enabled bool
		err     string // "" for a valid config
	}{
		{"approle", approle, true, ""},
		{"approle by default", with(approle, func(c *Config) { c.AuthMethod = "" }), true, ""},
		{"approle without a secret_id file", with(approle, func(c *Config) { c.SecretIDFile = "" }), true, "role_id and secret_id files"},
		{"no vault", Config{AuthMethod: "approle", Timeout: time.Second}, false, "role_id and secret_id files"},
		{"kubernetes", k8s, true, ""},
		{"kubernetes needs no approle files", with(k8s, func(c *Config) { c.RoleIDFile, c.SecretIDFile = "", "" }), true, ""},
		{"kubernetes without a role", with(k8s, func(c *Config) { c.KubernetesRole = "" }), true, "kubernetes needs the role"},
		{"kubernetes without a token file", with(k8s, func(c *Config) { c.KubernetesTokenFile = "" }), true, "kubernetes needs the role"},
		{"unknown method", with(approle, func(c *Config) { c.AuthMethod = "k8s" }), true, `unknown auth method "k8s"`},
		{"unknown method without files", Config{AuthMethod: "token", Timeout: time.Second}, true, `unknown auth method "token"`},
		{"no timeout", with(approle, func(c *Config) { c.Timeout = 0 }), true, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Enabled(); got != tt.enabled {
				t.Errorf("Enabled() = %v; want %v", got, tt.enabled)
			}
			_, err := New(tt.cfg, slog.New(slog.DiscardHandler))
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("New: %v; want a session", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("New: %v; want an error saying %q", err, tt.err)
			}
		})
	}
}

// An operator's token or skip-verify in the environment must never become the service's.
func TestNewClientIgnoresTheEnvironment(t *testing.T) {
	t.Setenv("VAULT_TOKEN", "an-operators-token")
	t.Setenv("VAULT_SKIP_VERIFY", "true")
	c, err := NewClient(Config{Addr: "https://127.0.0.1:8200", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.Token() != "" {
		t.Error("the client took VAULT_TOKEN from the environment")
	}
	if c.CloneConfig().HttpClient.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify {
		t.Error("the client skips verifying Vault's certificate because of VAULT_SKIP_VERIFY")
	}
}
