package provision

import (
	"log/slog"
	"path/filepath"
	"testing"
)

// A CA configuration is left alone only when it logs in with exactly our AppRole files and holds no token; a
// stack from before the AppRole (a Token) or with other paths is set again.
func TestCALoginCurrent(t *testing.T) {
	var cfg Config
	cfg.Vault.StateDir = "/srv/pz/vault"
	cfg.ConnectCA.ConsulDir = "/consul/ca-login"
	s, err := NewSession(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ca := NewConnectCA(s, NewConsulACL(s))
	want, err := ca.caAuthMethod()
	if err != nil {
		t.Fatal(err)
	}
	params := func(role, secret string) map[string]any {
		return map[string]any{"role_id_file_path": role, "secret_id_file_path": secret}
	}
	ours := params("/consul/ca-login/role-id", "/consul/ca-login/secret-id")
	for _, c := range []struct {
		name string
		cfg  map[string]any
		want bool
	}{
		{"our approle", map[string]any{"AuthMethod": map[string]any{"Type": "approle", "MountPath": caLoginMount, "Params": ours}}, true},
		{"a token from before the approle", map[string]any{"Token": "hvs.CAESIJ0zZm9vYmFyYmF6"}, false},
		{"a token beside the approle", map[string]any{"Token": "hvs.CAESIJ0zZm9vYmFyYmF6",
			"AuthMethod": map[string]any{"Type": "approle", "MountPath": caLoginMount, "Params": ours}}, false},
		{"the services' approle mount", map[string]any{"AuthMethod": map[string]any{"Type": "approle", "MountPath": "approle", "Params": ours}}, false},
		{"other files", map[string]any{"AuthMethod": map[string]any{"Type": "approle", "MountPath": caLoginMount,
			"Params": params("/tmp/role-id", "/consul/ca-login/secret-id")}}, false},
		{"no secret_id file", map[string]any{"AuthMethod": map[string]any{"Type": "approle", "MountPath": caLoginMount,
			"Params": map[string]any{"role_id_file_path": "/consul/ca-login/role-id"}}}, false},
		{"nothing", map[string]any{}, false},
	} {
		if got := caLoginCurrent(c.cfg, want); got != c.want {
			t.Errorf("%s: caLoginCurrent = %t; want %t", c.name, got, c.want)
		}
	}
	// Without a Consul-side folder, Consul reads where meshctl writes: consul-ca beside Vault's state folder.
	s.cfg.ConnectCA.ConsulDir = ""
	m, _ := ca.caAuthMethod()
	if got := m["Params"].(map[string]any)["role_id_file_path"]; got != filepath.Join("/srv/pz/consul-ca", RoleIDFile) {
		t.Errorf("role_id_file_path %v; want /srv/pz/consul-ca/role-id", got)
	}
}
