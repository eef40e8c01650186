package e2e

// Root never follows a path that a service's account controls (the design's threat model). The gateway's account
// owns its credentials folder, so it can put a symlink wherever root is about to write or read a file there.
// Each case plants one, aimed at a root-only canary, and makes root touch that name the way the stack does;
// the canary must stay as it was, the refusal must be in meshctl's log, and nothing of the canary may reach a
// file the gateway reads.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/hostaccount"
)

// How root comes to touch a name in the gateway's folder.
const (
	viaDeliver = "meshctl deliver"                    // what the supervisor runs before every (re)start
	viaCert    = "stack.sh deliver-gateway-cert"      // the gateway's certificate (start, make rotate-gateway-cert)
	viaRotate  = "meshctl rotate consul-token"        // reads the accessor back, keeps it as the previous one
	viaRetire  = "meshctl rotate consul-token-retire" // reads the previous accessor back
)

// plantedNames is every name root writes or reads back in an instance's credentials folder, with the step that
// touches it. folder: the name is a folder, replaced by a link to a root-only folder.
var plantedNames = []struct {
	name    string
	trigger string
	folder  bool
}{
	{"role-id", viaDeliver, false},
	{"secret-id", viaDeliver, false},
	{"consul-token", viaDeliver, false},
	{"consul-token.accessor", viaDeliver, false},
	{"consul-token.accessor", viaRotate, false},
	{"consul-token.previous-accessor", viaRotate, false},
	{"consul-token.previous-accessor", viaRetire, false},
	{"tls/server.pem", viaCert, false},
	{"tls/server-key.pem", viaCert, false},
	{"tls", viaCert, true},
}

// TestDeliveryRefusesPlantedLinks: for each name in plantedNames, the gateway's own account replaces it by a
// link to a root-only canary, then root delivers or rotates. Afterwards (positive control) the links are gone,
// delivery works, and the gateway, restarted by its supervisor with a fresh delivery, takes orders again.
func TestDeliveryRefusesPlantedLinks(t *testing.T) {
	gw := hostaccount.Lookup(t, "pizza-gateway")
	dir := filepath.Join(stack.Dir, "credentials", "gateway-1")
	canaryDir := t.TempDir() // root's, 0700
	canary := filepath.Join(canaryDir, "canary")
	secret := "canary-" + randomHex(t)
	if err := os.WriteFile(canary, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyDir := t.TempDir() // the target of a planted folder link: must stay empty
	checkCanary := func(t *testing.T) {
		t.Helper()
		b, err := os.ReadFile(canary)
		st, serr := os.Lstat(canary)
		if err != nil || serr != nil {
			t.Fatalf("the canary is gone: %v %v", err, serr)
		}
		if string(b) != secret+"\n" || st.Mode() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Fatalf("root wrote through the planted link: the canary now holds %q, mode %v, uid %d",
				b, st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
		}
		if entries, _ := os.ReadDir(emptyDir); len(entries) != 0 {
			t.Fatalf("root wrote into the folder a planted link points at: %v", entries)
		}
	}

	for _, c := range plantedNames {
		t.Run(c.name+" via "+c.trigger, func(t *testing.T) {
			target := canary
			plant := `ln -sfn -- "$1" "$2"`
			if c.folder {
				target, plant = emptyDir, `rm -rf -- "$2" && ln -s -- "$1" "$2"`
			}
			if _, err := gw.Run(10*time.Second, "bash", "-c", plant, "plant", target, filepath.Join(dir, c.name)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { restoreGateway(t, gw, dir, c.name) })
			logSize := fileSize(t, meshctlLog())

			out, err := touchAsRoot(c.trigger, dir, gw)
			if err == nil {
				t.Errorf("%s succeeded with a planted link at %s:\n%s", c.trigger, c.name, out)
			}
			checkCanary(t)
			newLog := readFrom(t, meshctlLog(), logSize)
			if strings.Contains(newLog+out, secret) {
				t.Fatalf("the canary's content reached meshctl's log or output")
			}
			if !strings.Contains(newLog, "REFUSED") || !strings.Contains(newLog, filepath.Join(dir, c.name)) ||
				!strings.Contains(newLog, gw.Name) {
				t.Fatalf("no refusal naming %s and its owner %s in meshctl's log; it says:\n%s", filepath.Join(dir, c.name), gw.Name, newLog)
			}
			// The reverse direction: no file root left in the gateway's folder holds the canary's content.
			if f := fileHolding(t, dir, secret); f != "" {
				t.Fatalf("root copied the root-only canary's content into the gateway's folder: %s", f)
			}
		})
	}

	// The supervisor's own path: a link planted where the restart's delivery reads and writes, then the gateway dies.
	t.Run("supervised restart", func(t *testing.T) {
		planted := filepath.Join(dir, "consul-token.accessor")
		if _, err := gw.Run(10*time.Second, "ln", "-sfn", "--", canary, planted); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { restoreGateway(t, gw, dir, "consul-token.accessor") })
		logSize := fileSize(t, meshctlLog())
		pid, err := stack.Pid("gateway")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() error {
			if l := readFrom(t, meshctlLog(), logSize); !strings.Contains(l, "REFUSED") || !strings.Contains(l, planted) {
				return fmt.Errorf("no refusal of %s in meshctl's log yet", planted)
			}
			return nil
		})
		checkCanary(t)
	})

	// Positive control: the links are gone (each case's cleanup), so delivery works, and the gateway serves.
	t.Run("positive control", func(t *testing.T) {
		if out, err := touchAsRoot(viaDeliver, dir, gw); err != nil {
			t.Fatalf("delivery without planted links: %v\n%s", err, out)
		}
		checkCanary(t)
		eventually(t, 120*time.Second, func() error {
			_, _, err := placeOrder(t, "", orderBody("Link Free"))
			return err
		})
	})
}

// touchAsRoot runs, as root with the stack's settings, the step that writes or reads a name in the folder.
func touchAsRoot(trigger, dir string, gw hostaccount.Account) (string, error) {
	env := []string{"MESHCTL_INSTANCE_SERVICE=gateway", "MESHCTL_INSTANCE_ID=gateway-1", "MESHCTL_INSTANCE_DIR=" + dir,
		"MESHCTL_INSTANCE_CONSUL=true", fmt.Sprintf("MESHCTL_INSTANCE_OWNER=%d:%d", gw.UID, gw.GID)}
	var args []string
	switch trigger {
	case viaDeliver:
		args = []string{"meshctl", "deliver"}
	case viaRotate:
		args = []string{"meshctl", "rotate", "consul-token"}
	case viaRetire:
		args = []string{"meshctl", "rotate", "consul-token-retire"}
	case viaCert:
		args = []string{"deliver-gateway-cert"}
	}
	cmd := exec.Command(filepath.Join(stack.Root, "scripts", "stack.sh"), args...)
	cmd.Dir, cmd.Env = stack.Root, append(append([]string{}, stack.Env()...), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// restoreGateway removes what the case planted (as the gateway's account) and gives the gateway its files
// back: a delivery, and its certificate for the tls names.
func restoreGateway(t *testing.T, gw hostaccount.Account, dir, name string) {
	t.Helper()
	if _, err := gw.Run(10*time.Second, "rm", "-f", "--", filepath.Join(dir, name)); err != nil {
		t.Error(err)
	}
	for _, step := range []string{viaDeliver, viaCert} {
		if out, err := touchAsRoot(step, dir, gw); err != nil {
			t.Errorf("restoring the gateway's files (%s): %v\n%s", step, err, out)
		}
	}
}

// fileHolding returns a regular file under dir (links are not followed) whose content holds s, or "".
func fileHolding(t *testing.T, dir, s string) string {
	t.Helper()
	found := ""
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			found = p
		}
		return nil
	})
	return found
}

func meshctlLog() string { return filepath.Join(stack.Dir, "logs", "meshctl.log") }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// readFrom returns what path gained after offset.
func readFrom(t *testing.T, path string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < offset {
		return string(b)
	}
	return string(bytes.Clone(b[offset:]))
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b) + strconv.Itoa(os.Getpid())
}
