package e2e

// No credential at rest can widen its own rights (the design's threat model): whoever copies a file from the
// stack's state folder holds what that file grants, and none grants writing policies, auth methods or mounts.
// Provisioning that needs those rights uses a root token generated for its run and revoked at its end.

import (
	"bufio"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/pizzajoint/mesh/provision"
)

// widening are the paths a token must not create, update or sudo on: any policy (the services' and its own by
// name, as the old operator policy listed them), any auth method, any mount.
var widening = []string{
	"sys/policies/acl/x", "sys/policies/acl/order", "sys/policies/acl/operator",
	"sys/auth/x", "sys/auth/kubernetes", "sys/auth/approle",
	"sys/mounts/x", "sys/mounts/connect-root/g9", "sys/mounts/transit",
}

// consulWriter leases a Consul token with acl = "write", which may write Consul policies and mint any Consul
// token: reading it is widening too.
const consulWriter = "consul/creds/provisioner"

var uuidShape = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Every file under the state folder that holds a Vault token is asked sys/capabilities-self. Folders of servers'
// data, logs and binaries are skipped with their reason; so is every file that holds no Vault token. Seen red
// with the old vault/policies/operator.hcl: "vault/operator-token: sys/policies/acl/order: [create read update]"
// and "vault/operator-token: sys/auth/kubernetes: [sudo update]".
func TestNoTokenAtRestCanWidenItsRights(t *testing.T) {
	skipDirs := map[string]string{
		"bin":             "the stack's Go binaries",
		"logs":            "process logs (no token is logged: scanForSecrets in hygiene_test.go checks every log)",
		"pids":            "pid files",
		"certs":           "listener certificates and keys, no Vault token",
		"mariadb":         "MariaDB's data folder (no Vault token: Vault holds the admin's password)",
		"mariadb-replica": "the replica's data folder",
		"consul":          "the Consul server's data (raft and ACL state: Consul tokens, not Vault's)",
		"vault/data":      "Vault's encrypted storage",
	}
	var checked []string
	err := filepath.WalkDir(stack.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(stack.Dir, path)
		if d.IsDir() {
			if why, ok := skipDirs[rel]; ok {
				t.Logf("skip %s/: %s", rel, why)
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			t.Logf("skip %s: not a regular file (%s)", rel, d.Type())
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > 4096 {
			t.Logf("skip %s: %d bytes, no single token", rel, info.Size())
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		value := strings.TrimSpace(string(b))
		switch {
		case vaultTokenShape.MatchString(value): // controlplane_test.go
		case uuidShape.MatchString(value):
			t.Logf("skip %s: a UUID (a Consul token, a role_id or an accessor), not a Vault token", rel)
			return nil
		case rel == "vault/unseal-key":
			t.Logf("skip %s: the unseal key, root's (trusted); it is no token, generate-root needs it (README, \"Operator access\")", rel)
			return nil
		default:
			t.Logf("skip %s: not shaped like a Vault token (%d bytes)", rel, len(value))
			return nil
		}
		if wrapped, ok := wrappingLookup(t, value); ok {
			// A live response-wrapping token may only unwrap what it wraps; asking with it would spend its one use.
			if !regexp.MustCompile(`^auth/approle/role/[a-z-]+/secret-id$`).MatchString(wrapped) {
				t.Errorf("%s: a wrapping token of %s; want only delivered secret_ids", rel, wrapped)
			}
			t.Logf("skip %s: a response-wrapping token of %s (unwraps that one secret_id: delivery)", rel, wrapped)
			return nil
		}
		c := vaultAs(t, value)
		for _, p := range widening {
			caps, err := c.Sys().CapabilitiesSelf(p)
			if vaultStatus(err) == 403 && strings.Contains(err.Error(), "invalid token") {
				t.Logf("skip %s: a Vault token that is no longer valid (used up or revoked)", rel)
				return nil
			}
			if err != nil {
				t.Fatalf("%s: capabilities-self %s: %v", rel, p, err)
			}
			if bad := slices.ContainsFunc(caps, func(c string) bool {
				return c == "create" || c == "update" || c == "sudo" || c == "root"
			}); bad {
				t.Errorf("%s: %s: %v", rel, p, caps)
			}
		}
		caps, err := c.Sys().CapabilitiesSelf(consulWriter)
		if err != nil {
			t.Fatalf("%s: capabilities-self %s: %v", rel, consulWriter, err)
		}
		if slices.ContainsFunc(caps, func(c string) bool { return c == "read" || c == "root" }) {
			t.Errorf("%s: %s: %v (a Consul token that may write Consul's policies)", rel, consulWriter, caps)
		}
		checked = append(checked, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("valid Vault tokens checked: %v", checked)
	if !slices.Contains(checked, "vault/operator-token") {
		t.Fatalf("the operator token was not among the checked files %v: the walk missed it", checked)
	}
}

// wrappingLookup asks Vault (unauthenticated, without using the token up) whether token is a live
// response-wrapping token, and what created it.
func wrappingLookup(t *testing.T, token string) (creationPath string, ok bool) {
	t.Helper()
	c := vaultAs(t, "")
	c.ClearToken()
	sec, err := c.Logical().Write("sys/wrapping/lookup", map[string]any{"token": token})
	if err != nil || sec == nil {
		return "", false
	}
	p, _ := sec.Data["creation_path"].(string)
	return p, true
}

// Positive control: the operator's token still runs the runbook (a transit key rotation through meshctl, as
// `make rotate-transit-key` runs it), and a second bootstrap (what `make run` does on an existing state) still
// succeeds, revoking the token it provisioned with and leaving no root-policy token behind.
func TestOperatorRunbookAndRebootstrapLeaveNoRootToken(t *testing.T) {
	before := transitVersion(t)
	if _, err := stack.Meshctl("rotate", "transit-key"); err != nil {
		t.Fatalf("the runbook's transit rotation with the operator token: %v", err)
	}
	if after := transitVersion(t); after != before+1 {
		t.Fatalf("transit key version %d after a rotation from %d", after, before)
	}

	logFile := filepath.Join(stack.Dir, "logs", "meshctl.log")
	st, err := os.Stat(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stack.Meshctl("bootstrap"); err != nil {
		t.Fatalf("a second bootstrap: %v", err)
	}
	made, revoked := provisioningAccessors(t, logFile, st.Size())
	if len(made) != 1 || !slices.Equal(made, revoked) {
		t.Fatalf("the bootstrap made provisioning tokens %v and revoked %v; want one, revoked", made, revoked)
	}

	// Root is trusted: the test makes its own root token the same way, to look at every token Vault holds.
	key, err := os.ReadFile(filepath.Join(stack.Dir, "vault", "unseal-key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root := vaultAs(t, "")
	token, err := provision.GenerateRoot(ctx, root, strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(remember(token)) // the logs are scanned for it after the tests
	defer func() {
		if err := root.Auth().Token().RevokeSelf(""); err != nil {
			t.Errorf("revoke the test's root token: %v", err)
		}
	}()
	self, err := root.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := self.Data["accessor"].(string)

	if _, err := root.Auth().Token().LookupAccessor(made[0]); err == nil {
		t.Errorf("the bootstrap's provisioning token (accessor %s) is still valid", made[0])
	}
	list, err := root.Logical().List("auth/token/accessors")
	if err != nil || list == nil {
		t.Fatalf("list token accessors: %v", err)
	}
	keys, _ := list.Data["keys"].([]any)
	for _, k := range keys {
		acc, _ := k.(string)
		if acc == mine {
			continue
		}
		sec, err := root.Auth().Token().LookupAccessor(acc)
		if err != nil {
			continue // expired meanwhile
		}
		if pols := policiesOf(sec); slices.Contains(pols, "root") {
			t.Errorf("a token with the root policy is left: accessor %s, display name %v", acc, sec.Data["display_name"])
		}
	}
	t.Logf("%d tokens in Vault, none but the test's own with the root policy", len(keys))
}

func transitVersion(t *testing.T) int64 {
	t.Helper()
	sec, err := vaultOperator(t).Logical().Read("transit/keys/orders-pii")
	if err != nil || sec == nil {
		t.Fatalf("read the transit key: %v", err)
	}
	n, err := sec.Data["latest_version"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// provisioningAccessors reads meshctl's log from offset: the accessors (not secrets) of the provisioning tokens
// made and revoked.
func provisioningAccessors(t *testing.T, file string, offset int64) (made, revoked []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Msg, Accessor string
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Accessor == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line.Msg, "provisioning token for this run"):
			made = append(made, line.Accessor)
		case line.Msg == "provisioning token revoked":
			revoked = append(revoked, line.Accessor)
		}
	}
	return made, revoked
}

func policiesOf(sec *vault.Secret) []string {
	var out []string
	raw, _ := sec.Data["policies"].([]any)
	for _, p := range raw {
		s, _ := p.(string)
		out = append(out, s)
	}
	return out
}
