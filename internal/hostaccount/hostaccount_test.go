package hostaccount

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNewAccountRunsAsItself(t *testing.T) {
	var name string
	t.Run("made", func(t *testing.T) {
		a := New(t)
		name = a.Name
		if a.UID == 0 || !strings.HasPrefix(a.Name, "pzt-") {
			t.Fatalf("account %+v: want a fresh non-root account", a)
		}
		out, err := a.Run(10*time.Second, "id", "-u")
		if err != nil || strings.TrimSpace(out) != strconv.Itoa(int(a.UID)) {
			t.Fatalf("id -u as %s = %q, %v; want %d", a.Name, out, err, a.UID)
		}
		if out, _ := a.Run(10*time.Second, "id", "-G"); strings.TrimSpace(out) != strconv.Itoa(int(a.GID)) {
			t.Fatalf("groups of %s = %q; want its own group alone", a.Name, out)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := a.Dial("127.0.0.1", port, 5*time.Second); err != nil {
			t.Fatalf("Dial to an open port: %v", err)
		}
		ln.Close()
		if err := a.Dial("127.0.0.1", port, 5*time.Second); err == nil {
			t.Fatal("Dial to a closed port succeeded")
		}
	})
	if err := exec.Command("id", "-u", name).Run(); err == nil {
		t.Fatalf("account %s still exists after its test", name)
	}
}
