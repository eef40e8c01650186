package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/pizzajoint/mesh/internal/hostaccount"
)

// The Connect CA's configuration, as the runbook's Consul operator token reads it
// (GET /v1/connect/ca/configuration), holds no Vault token: Consul logs in through the CA's own AppRole from
// root-only files. Seen red with the former token path restored: the check found Config.Token = "hvs.…" and
// no AuthMethod.
func TestConnectCAConfigHoldsNoToken(t *testing.T) {
	cfg := operatorReadsCAConfig(t)
	if err := tokenFree(cfg.Config); err != nil {
		t.Error(err)
	}
	if err := logsInWithAppRole(cfg.Config); err != nil {
		t.Error(err)
	}
	// Positive control: the CA still signs. A leaf for a service no one asked for before makes Consul call
	// Vault's PKI with the token it got from its login, and the leaf chains to the active root.
	leafSigned(t)
	if status, _, err := placeOrder(t, "", orderBody("CA login")); err != nil || status != http.StatusCreated {
		t.Fatalf("POST /pizza through the gateway: %d %v; want 201", status, err)
	}
}

// The CA's login files are root's alone: neither a local account of the operator's nor any service's account
// can list the folder or read a file in it. Positive control: root reads both, and they are the files the CA
// configuration names. Seen red with the former token path restored: the configuration names no files.
func TestConnectCALoginFilesAreRootOnly(t *testing.T) {
	cfg := operatorReadsCAConfig(t)
	files := caLoginFiles(t, cfg.Config)
	dir := filepath.Join(stack.Dir, "consul-ca")
	for _, f := range files {
		if filepath.Dir(f) != dir {
			t.Fatalf("the CA configuration names %s, not a file in %s", f, dir)
		}
	}
	checkMode(t, dir, 0o700|os.ModeDir)
	for _, f := range files {
		checkMode(t, f, 0o600)
		b, err := os.ReadFile(f)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			t.Fatalf("root reads %s (positive control): %q %v", f, b, err)
		}
		remember(strings.TrimSpace(string(b))) // the log scan after the tests looks for them too
	}
	accounts := []hostaccount.Account{hostaccount.New(t)}
	for _, name := range []string{"pizza-order", "pizza-gateway", "pizza-migrate"} {
		accounts = append(accounts, hostaccount.Lookup(t, name))
	}
	for _, a := range accounts {
		if out, err := a.Run(10*time.Second, "ls", dir); err == nil {
			t.Errorf("%s lists %s: %q", a.Name, dir, out)
		}
		for _, f := range files {
			if out, err := a.Run(10*time.Second, "cat", f); err == nil {
				t.Errorf("%s reads %s (%d bytes)", a.Name, f, len(out))
			}
		}
	}
}

// A stack whose CA configuration still holds a token (as every stack did before the AppRole) is moved onto the
// AppRole by its next bootstrap, on the same root, and the token it held is revoked. Seen red with connectCA
// leaving any Vault configuration alone, as before: the configuration still held the token after the bootstrap.
func TestConnectCAMigratesFromAToken(t *testing.T) {
	prov := provisioner(t)
	cur, _, err := prov.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	files := caLoginFiles(t, cur.Config)
	// The old shape: the same mounts, a Vault token of policy connect-ca in the configuration.
	old := vaultAs(t, "")
	roleID, _ := os.ReadFile(files["role_id_file_path"])
	secretID, _ := os.ReadFile(files["secret_id_file_path"])
	login, err := old.Logical().Write("auth/approle-connect-ca/login", map[string]any{
		"role_id": string(roleID), "secret_id": strings.TrimSpace(string(secretID))})
	if err != nil {
		t.Fatalf("log in as the CA: %v", err)
	}
	token := remember(login.Auth.ClientToken)
	legacy := map[string]any{}
	for k, v := range cur.Config {
		if k != "AuthMethod" {
			legacy[k] = v
		}
	}
	legacy["Token"] = token
	rootBefore := activeConnectRoot(t)
	if _, err := prov.Connect().CASetConfig(&api.CAConfig{Provider: "vault", Config: legacy}, nil); err != nil {
		t.Fatalf("set the CA configuration of a stack from before the approle: %v", err)
	}
	if err := tokenFree(operatorReadsCAConfig(t).Config); err == nil {
		t.Fatal("the configuration with a token reads as token-free: the check proves nothing")
	}

	if out, err := stack.Meshctl("bootstrap"); err != nil {
		t.Fatalf("meshctl bootstrap: %v\n%s", err, out)
	}
	after := operatorReadsCAConfig(t)
	if err := tokenFree(after.Config); err != nil {
		t.Errorf("after the bootstrap: %v", err)
	}
	if err := logsInWithAppRole(after.Config); err != nil {
		t.Errorf("after the bootstrap: %v", err)
	}
	if now := activeConnectRoot(t); now != rootBefore {
		t.Errorf("the active root changed from %s to %s: a migration keeps the root", rootBefore, now)
	}
	if _, err := vaultAs(t, token).Auth().Token().LookupSelf(); vaultStatus(err) != http.StatusForbidden {
		t.Errorf("the token the configuration held still answers (%v); it should be revoked", err)
	}
	leafSigned(t)
}

// operatorReadsCAConfig is GET /v1/connect/ca/configuration with the runbook's Consul operator token.
func operatorReadsCAConfig(t *testing.T) api.CAConfig {
	t.Helper()
	status, body := consulCall(t, stack.ConsulAddr, operatorConsulToken(t), "GET", "/v1/connect/ca/configuration", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/connect/ca/configuration as the operator: %d %s", status, body)
	}
	var cfg api.CAConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Provider != "vault" {
		t.Fatalf("the CA provider is %q, not vault", cfg.Provider)
	}
	return cfg
}

// tokenFree walks a configuration for anything that looks like a Vault token: a "Token" key with a value, or a
// string shaped like a Vault token anywhere.
func tokenFree(v any) error {
	var found []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.EqualFold(k, "token") {
					if s, _ := e.(string); s != "" {
						found = append(found, fmt.Sprintf("%s.%s holds a value (%.6s…)", path, k, s))
					}
				}
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case string:
			for _, prefix := range []string{"hvs.", "hvb.", "s."} {
				if strings.HasPrefix(x, prefix) {
					found = append(found, fmt.Sprintf("%s is token-shaped (%.6s…)", path, x))
				}
			}
		}
	}
	walk("Config", v)
	if len(found) > 0 {
		return fmt.Errorf("the CA configuration the operator reads holds a token: %s", strings.Join(found, "; "))
	}
	return nil
}

// logsInWithAppRole: the configuration's AuthMethod is the CA's own AppRole mount, not the services'.
func logsInWithAppRole(cfg map[string]any) error {
	m, _ := cfg["AuthMethod"].(map[string]any)
	if m == nil {
		return fmt.Errorf("the CA configuration has no AuthMethod (keys %v)", keysOf(cfg))
	}
	if m["Type"] != "approle" || m["MountPath"] != "approle-connect-ca" {
		return fmt.Errorf("the CA logs in with %v at %v; want approle at approle-connect-ca", m["Type"], m["MountPath"])
	}
	return nil
}

// caLoginFiles are the role_id and secret_id files the CA configuration names.
func caLoginFiles(t *testing.T, cfg map[string]any) map[string]string {
	t.Helper()
	m, _ := cfg["AuthMethod"].(map[string]any)
	params, _ := m["Params"].(map[string]any)
	files := map[string]string{}
	for _, k := range []string{"role_id_file_path", "secret_id_file_path"} {
		f, _ := params[k].(string)
		if f == "" {
			t.Fatalf("the CA configuration names no %s (AuthMethod %v, keys %v)", k, m, keysOf(cfg))
		}
		files[k] = f
	}
	return files
}

func keysOf(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// checkMode: path is owned by root with exactly mode.
func checkMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != mode {
		t.Errorf("%s has mode %v; want %v", path, info.Mode(), mode)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 {
		t.Errorf("%s is not root's", path)
	}
}

// leafSigned asks the agent for a leaf of a service no one asked for before (a fresh signing by Vault's PKI) and
// checks that it chains to the active root.
func leafSigned(t *testing.T) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	service := "ca-probe-" + hex.EncodeToString(b)
	token := mintServiceToken(t, service)
	c := consulAs(t, stack.ConsulAddr, token)
	var leaf *api.LeafCert
	eventually(t, 30*time.Second, func() (err error) {
		leaf, _, err = c.Agent().ConnectCALeaf(service, nil)
		return err
	})
	status, body := consulCall(t, stack.ConsulAddr, token, "GET", "/v1/agent/connect/ca/roots", nil)
	var roots struct {
		Roots []struct {
			RootCert          string
			IntermediateCerts []string
		}
	}
	if err := json.Unmarshal(body, &roots); status != http.StatusOK || err != nil {
		t.Fatalf("the CA roots: %d %v", status, err)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots.Roots {
		pool.AppendCertsFromPEM([]byte(r.RootCert))
		for _, i := range r.IntermediateCerts {
			inter.AppendCertsFromPEM([]byte(i))
		}
	}
	// The leaf's PEM carries its intermediates after it.
	var chain []*x509.Certificate
	rest := []byte(leaf.CertPEM)
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		crt, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, crt)
	}
	if len(chain) == 0 {
		t.Fatal("the leaf holds no certificate")
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the new leaf for %s does not chain to the Connect CA's roots: %v", service, err)
	}
}
