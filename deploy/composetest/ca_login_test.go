package composetest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// In Compose too the Connect CA logs in to Vault through its own AppRole from the consul-ca-login volume: the CA
// configuration the runbook's Consul token reads holds file paths and no token, and a CA rotation (a new root
// mount, so a new login by Consul from those files) leaves customers ordering.
func TestConnectCALogsInWithItsAppRole(t *testing.T) {
	token := strings.TrimSpace(st.meshctlT(t, "token", "consul-operator"))
	get := func(path string, into any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://localhost:%d%s", st.uiPort, path), nil)
		req.Header.Set("X-Consul-Token", token)
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s as the operator: %s %s", path, resp.Status, b)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"hvs.`) || strings.Contains(string(b), `"Token":"`) {
			t.Errorf("GET %s holds a token: %.300s", path, b)
		}
	}
	var cfg struct {
		Provider string
		Config   struct {
			AuthMethod struct {
				Type, MountPath string
				Params          map[string]string
			}
		}
	}
	get("/v1/connect/ca/configuration", &cfg)
	am := cfg.Config.AuthMethod
	if cfg.Provider != "vault" || am.Type != "approle" || am.MountPath != "approle-connect-ca" ||
		am.Params["role_id_file_path"] != "/consul/ca-login/role-id" ||
		am.Params["secret_id_file_path"] != "/consul/ca-login/secret-id" {
		t.Fatalf("the CA configuration: %+v; want vault logging in with approle-connect-ca from /consul/ca-login", cfg)
	}

	var before, after struct{ ActiveRootID string }
	get("/v1/connect/ca/roots", &before)
	if _, err := st.meshctl("rotate", "connect-ca"); err != nil {
		t.Fatalf("meshctl rotate connect-ca: %v", err)
	}
	get("/v1/connect/ca/roots", &after)
	if after.ActiveRootID == before.ActiveRootID {
		t.Errorf("the active root is still %s after the rotation", after.ActiveRootID)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, _, err := placeOrder("composetest-ca-login")
		if code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /pizza after the CA rotation: %d %v", code, err)
		}
		time.Sleep(time.Second)
	}
}
