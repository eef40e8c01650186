package devserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
)

// selfRules let a token look itself up, renew and revoke itself, as every service's policy does.
const selfRules = `path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
`

// AppRole makes an AppRole role name on v (enabling the method on first use) whose tokens hold rules (HCL
// policy text) besides managing themselves, and live tokenTTL (renewable up to an hour). It writes the role's
// role_id and a fresh, unwrapped secret_id to files of a test directory and returns their paths.
func (v *Vault) AppRole(t testing.TB, name, rules, tokenTTL string) (roleIDFile, secretIDFile string) {
	t.Helper()
	root := v.Root
	mounts, err := root.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["approle/"]; !ok {
		if err := root.Sys().EnableAuthWithOptions("approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := root.Sys().PutPolicy(name, selfRules+rules); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/approle/role/"+name, map[string]any{
		"token_policies": name, "token_ttl": tokenTTL, "token_max_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	roleID, err := root.Logical().Read("auth/approle/role/" + name + "/role-id")
	if err != nil {
		t.Fatal(err)
	}
	secretID, err := root.Logical().Write("auth/approle/role/"+name+"/secret-id", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roleIDFile, secretIDFile = filepath.Join(dir, "role-id"), filepath.Join(dir, "secret-id")
	WriteFile(t, roleIDFile, roleID.Data["role_id"].(string))
	WriteFile(t, secretIDFile, secretID.Data["secret_id"].(string))
	return roleIDFile, secretIDFile
}

// WriteFile replaces path's content with v at once (a rename), as a delivery does, readable by its owner only.
func WriteFile(t testing.TB, path, v string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(strings.TrimSpace(v)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
