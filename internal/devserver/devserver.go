// Package devserver starts a real Vault or Consul in dev mode for a package's tests: in memory, on free
// loopback ports, stopped when the test ends. Dev mode is a test shortcut and lives here only; what users run
// (scripts/stack.sh) never uses it. The binaries come from scripts/tools.sh (PATH, the cache, or a build).
package devserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// Vault is a dev-mode Vault over TLS, with a root token.
type Vault struct {
	Addr, CACert, RootToken string
	Root                    *vault.Client // a client with the root token
}

// StartVault runs `vault server -dev -dev-tls` until the test ends.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	dir := t.TempDir()
	// Vault also binds the port after its listener's (its cluster listener).
	port, err := testkit.Block(testkit.Singles, 2)
	if err != nil {
		t.Fatal(err)
	}
	token := randomHex(t)
	cmd := exec.Command(tool(t, "vault"), "server", "-dev", "-dev-tls", "-dev-tls-cert-dir="+dir,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port))
	// The root token goes in the environment, not on a command line.
	cmd.Env = append(os.Environ(), "VAULT_DEV_ROOT_TOKEN_ID="+token, "VAULT_DISABLE_MLOCK=true", "HOME="+dir)
	start(t, cmd, filepath.Join(dir, "vault.log"))
	v := &Vault{Addr: fmt.Sprintf("https://127.0.0.1:%d", port), CACert: filepath.Join(dir, "vault-ca.pem"), RootToken: token}
	testkit.Eventually(t, 30*time.Second, "vault", func() error {
		// Vault writes its CA file while it starts: until the file is whole, parsing it fails, and that is
		// a reason to wait, not a failed test.
		root, err := v.client(token)
		if err != nil {
			return err
		}
		v.Root = root
		h, err := v.Root.Sys().Health()
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed {
			return errors.New("not ready")
		}
		return nil
	})
	return v
}

// Client is a client of v acting with token (verifying v's certificate).
func (v *Vault) Client(t testing.TB, token string) *vault.Client {
	t.Helper()
	c, err := v.client(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (v *Vault) client(token string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = v.Addr
	if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: v.CACert}); err != nil {
		return nil, err
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

// Consul is a dev-mode Consul agent with ACLs on (default deny) and a management token.
type Consul struct {
	Addr, ManagementToken string
	Root                  *consul.Client // a client with the management token
}

// StartConsul runs `consul agent -dev` with ACLs until the test ends.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	dir := t.TempDir()
	token := newUUID(t)
	http := testkit.FreePort(t)
	cfg := fmt.Sprintf(`acl {
  enabled = true
  default_policy = "deny"
  tokens { initial_management = %q }
}
ports {
  http = %d
  https = -1
  grpc = -1
  grpc_tls = -1
  dns = -1
  server = %d
  serf_lan = %d
  serf_wan = %d
}
`, token, http, testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t))
	file := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "consul"), "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1", "-config-file="+file)
	start(t, cmd, filepath.Join(dir, "consul.log"))
	c := &Consul{Addr: fmt.Sprintf("http://127.0.0.1:%d", http), ManagementToken: token}
	c.Root = c.Client(t, token)
	testkit.Eventually(t, 30*time.Second, "consul", func() error {
		if leader, err := c.Root.Status().Leader(); err != nil || leader == "" {
			return fmt.Errorf("no leader yet (%v)", err)
		}
		_, _, err := c.Root.ACL().TokenReadSelf(nil)
		return err
	})
	return c
}

// Client is a client of c acting with token.
func (c *Consul) Client(t testing.TB, token string) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Token, cfg.TokenFile = c.Addr, token, ""
	client, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// start runs cmd with its output in logPath, and stops it when the test ends; on a failed test the log's tail
// is printed.
func start(t testing.TB, cmd *exec.Cmd, logPath string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("last lines of %s:\n%s", filepath.Base(logPath), strings.Join(lines[max(0, len(lines)-20):], "\n"))
		}
	})
}

// tool finds consul or vault as the stack does (scripts/tools.sh ensure NAME), building it once if needed.
func tool(t testing.TB, name string) string {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "tools.sh"), "ensure", name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tools.sh ensure %s: %v\n%s", name, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newUUID makes a random UUID (Consul's token secrets are UUIDs).
func newUUID(t testing.TB) string {
	h := randomHex(t)
	return h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}
