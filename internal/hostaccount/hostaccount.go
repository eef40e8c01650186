// Package hostaccount gives tests local accounts to act as on the real host: a throwaway system account made for
// one test (an attacker with a login of its own and nothing else), or an existing one (a service's own user, as
// if its process were compromised). Commands run as an account through setpriv, as scripts/stack.sh runs the
// services. Making accounts and switching to them needs root; the tests fail, never skip, without it.
package hostaccount

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Account is a local account.
type Account struct {
	Name     string
	UID, GID uint32
}

// New makes a fresh non-root system account (no home, no login shell, no groups), removed when the test ends.
func New(t testing.TB) Account {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("hostaccount.New makes a local account with useradd: run the tests as root")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "pzt-" + hex.EncodeToString(b)
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", "--user-group", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		// userdel refuses while a process of the account runs; each test ends its commands, but give stragglers a moment.
		var out []byte
		var err error
		for range 20 {
			if out, err = exec.Command("userdel", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("userdel %s: %v: %s", name, err, out)
	})
	return Lookup(t, name)
}

// Lookup is an existing account, e.g. a service's user (pizza-order).
func Lookup(t testing.TB, name string) Account {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("account %s: %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("account %s: %v", name, err)
	}
	if uid == 0 {
		t.Fatalf("account %s is root: an attacker here must not be", name)
	}
	return Account{Name: name, UID: uint32(uid), GID: uint32(gid)}
}

// Command is name with args, to run as the account: its uid and gid, no supplementary groups, in "/".
func (a Account) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=" + strconv.Itoa(int(a.UID)),
		"--regid=" + strconv.Itoa(int(a.GID)), "--clear-groups", "--", name}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C"}
	return cmd
}

// Run runs name with args as the account, within timeout, and returns its standard output; the error carries
// its standard error.
func (a Account) Run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := a.Command(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s as %s: %w: %s", name, strings.Join(args, " "), a.Name, err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Dial opens a TCP connection to host:port as the account (bash's /dev/tcp, then closes it). nil means the
// connection was established; an error says why not (refused, or no answer within timeout).
func (a Account) Dial(host string, port int, timeout time.Duration) error {
	_, err := a.Run(timeout, "bash", "-c", `exec 3<>"/dev/tcp/$1/$2"`, "dial", host, strconv.Itoa(port))
	return err
}
