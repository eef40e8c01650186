package servicedir

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serviceUID is the owner the tests give a service folder: any uid that is not root's.
const serviceUID = 4242

const canaryContent = "root-only canary\n"

// fixture is a root-owned parent holding a service-owned folder "svc" and a root-only canary file beside it.
type fixture struct {
	parent, dir, canary string
	logs                *bytes.Buffer
	logger              *slog.Logger
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("servicedir tests give files to another account: run them as root (the stack's tests do)")
	}
	parent := t.TempDir()
	f := fixture{parent: parent, dir: filepath.Join(parent, "svc"), canary: filepath.Join(parent, "canary"), logs: &bytes.Buffer{}}
	f.logger = slog.New(slog.NewJSONHandler(f.logs, nil))
	if err := os.WriteFile(f.canary, []byte(canaryContent), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f.dir, serviceUID, serviceUID); err != nil {
		t.Fatal(err)
	}
	return f
}

// plantFile puts a file owned by the service into its folder, as the service itself could.
func (f fixture) plantFile(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, serviceUID, serviceUID); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) plantSymlink(t *testing.T, name, target string) {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, serviceUID, serviceUID); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) checkCanary(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(f.canary)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.canary)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != canaryContent || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("the root-only canary changed: %q mode %v uid %d", b, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
	}
}

func (f fixture) checkRefusalLogged(t *testing.T, name string) {
	t.Helper()
	logs := f.logs.String()
	if !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, filepath.Join(f.dir, name)) ||
		!strings.Contains(logs, `"owner_uid":`) {
		t.Fatalf("no loud refusal naming %s and its owner in the log:\n%s", name, logs)
	}
	if strings.Contains(logs, strings.TrimSpace(canaryContent)) {
		t.Fatalf("the log holds the canary's content:\n%s", logs)
	}
}

// TestPlantedPaths: whatever the service plants at a name, root neither writes through it nor reads it.
func TestPlantedPaths(t *testing.T) {
	cases := []struct {
		name  string
		plant func(t *testing.T, f fixture)
	}{
		{"symlink to a root-only file", func(t *testing.T, f fixture) { f.plantSymlink(t, "secret-id", f.canary) }},
		{"symlink to a missing file", func(t *testing.T, f fixture) {
			f.plantSymlink(t, "secret-id", filepath.Join(f.parent, "made-by-root"))
		}},
		{"hard link to a root-only file", func(t *testing.T, f fixture) {
			if err := os.Link(f.canary, filepath.Join(f.dir, "secret-id")); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, f fixture) {
			if err := syscall.Mkfifo(filepath.Join(f.dir, "secret-id"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"folder where a file belongs", func(t *testing.T, f fixture) {
			if err := os.Mkdir(filepath.Join(f.dir, "secret-id"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.plant(t, f)
			d, err := Open(f.dir, f.logger)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()

			if err := d.WriteFile("secret-id", []byte("new secret"), 0o600); !errors.Is(err, ErrPlanted) {
				t.Fatalf("write through a planted %s: err %v, want ErrPlanted", tc.name, err)
			}
			f.checkCanary(t)
			f.checkRefusalLogged(t, "secret-id")
			if _, err := os.Lstat(filepath.Join(f.parent, "made-by-root")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("root created the link's target: %v", err)
			}

			done := make(chan error, 1)
			go func() {
				b, err := d.ReadFile("secret-id")
				if strings.Contains(string(b), strings.TrimSpace(canaryContent)) {
					err = errors.New("read handed over the canary's content")
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrPlanted) {
					t.Fatalf("read through a planted %s: err %v, want ErrPlanted", tc.name, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read blocked on the planted path")
			}
			if _, err := d.Exists("secret-id"); !errors.Is(err, ErrPlanted) {
				t.Fatalf("Exists on a planted %s: err %v, want ErrPlanted", tc.name, err)
			}
		})
	}
}

// TestFileOfAnotherOwner: a single-link file of root's in a service folder (what a hard link becomes once its
// original is replaced) is never read back; a write replaces it.
func TestFileOfAnotherOwner(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, "consul-token.accessor")
	if err := os.WriteFile(p, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(f.dir, f.logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadFile("consul-token.accessor"); !errors.Is(err, ErrPlanted) {
		t.Fatalf("read of a root-owned file in a service folder: err %v, want ErrPlanted", err)
	}
	if err := d.WriteFile("consul-token.accessor", []byte("new"), 0o600); err != nil {
		t.Fatalf("write over a root-owned file: %v", err)
	}
	if b, err := d.ReadFile("consul-token.accessor"); err != nil || string(b) != "new" {
		t.Fatalf("read back: %q, %v", b, err)
	}
}

// TestFolderIsALink: the service folder itself (or a folder inside it) replaced by a link is refused.
func TestFolderIsALink(t *testing.T) {
	f := newFixture(t)
	link := filepath.Join(f.parent, "svc-link")
	if err := os.Symlink(f.parent, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, f.logger); !errors.Is(err, ErrPlanted) {
		t.Fatalf("Open of a link: err %v, want ErrPlanted", err)
	}
	if _, err := Create(link, 0o700, f.logger); !errors.Is(err, ErrPlanted) {
		t.Fatalf("Create over a link: err %v, want ErrPlanted", err)
	}
	f.checkRefusalLogged(t, "../svc-link")

	f.plantSymlink(t, "tls", f.parent)
	d, err := Open(f.dir, f.logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Sub("tls", 0o700); !errors.Is(err, ErrPlanted) {
		t.Fatalf("Sub of a link: err %v, want ErrPlanted", err)
	}
	f.checkRefusalLogged(t, "tls")
	if _, err := os.Lstat(filepath.Join(f.parent, "tls")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("root made a folder through the link: %v", err)
	}
}

// TestWrite: new files and replacements get exactly the mode asked and the folder's owner; reads get them back.
func TestWrite(t *testing.T) {
	cases := []struct {
		name     string
		existing string // a file the service already has at the name ("": none)
		mode     os.FileMode
	}{
		{"new file", "", 0o600},
		{"overwrite", "old token", 0o600},
		{"another mode", "", 0o640},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.existing != "" {
				f.plantFile(t, "consul-token", tc.existing)
			}
			d, err := Open(f.dir, f.logger)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.WriteFile("consul-token", []byte("the new token"), tc.mode); err != nil {
				t.Fatal(err)
			}
			st, err := os.Lstat(filepath.Join(f.dir, "consul-token"))
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if !st.Mode().IsRegular() || st.Mode().Perm() != tc.mode || sys.Uid != serviceUID || sys.Gid != serviceUID {
				t.Fatalf("written file: mode %v uid %d gid %d, want regular %v %d:%d", st.Mode(), sys.Uid, sys.Gid, tc.mode, serviceUID, serviceUID)
			}
			b, err := d.ReadFile("consul-token")
			if err != nil || string(b) != "the new token" {
				t.Fatalf("read back %q, %v", b, err)
			}
			if ok, err := d.Exists("consul-token"); !ok || err != nil {
				t.Fatalf("Exists: %t, %v", ok, err)
			}
			entries, _ := os.ReadDir(f.dir)
			if len(entries) != 1 {
				t.Fatalf("temporary files left behind: %v", entries)
			}
			if f.logs.Len() != 0 {
				t.Fatalf("a normal write logged: %s", f.logs)
			}
		})
	}
}

// TestCreateAndOwn: a folder root makes, then gives to the service; a folder inside it follows its owner.
func TestCreateAndOwn(t *testing.T) {
	f := newFixture(t)
	d, err := Create(filepath.Join(f.parent, "new", "gateway-1"), 0o700, f.logger)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Owner().UID != 0 {
		t.Fatalf("new folder owner %v, want root's", d.Owner())
	}
	if err := d.Own(Owner{serviceUID, serviceUID}, 0o700); err != nil {
		t.Fatal(err)
	}
	sub, err := d.Sub("tls", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.WriteFile("server-key.pem", []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.Path(), sub.Path(), filepath.Join(sub.Path(), "server-key.pem")} {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if sys := st.Sys().(*syscall.Stat_t); sys.Uid != serviceUID || st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: uid %d mode %v, want the service's alone", p, sys.Uid, st.Mode().Perm())
		}
	}
	if err := d.Remove("missing"); err != nil {
		t.Fatalf("Remove of a missing name: %v", err)
	}
}

func TestParseOwner(t *testing.T) {
	cases := []struct {
		in   string
		want Owner
		ok   bool
	}{{"100:101", Owner{100, 101}, true}, {"100", Owner{100, 100}, true}, {"x:1", Owner{}, false}, {"-1:2", Owner{}, false}}
	for _, tc := range cases {
		got, err := ParseOwner(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseOwner(%q) = %v, %v", tc.in, got, err)
		}
	}
}
