package stacktest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// The stack's MariaDB, primary and replica, runs under its supervisor like every other process of the stack:
// after a kill -9 of mariadbd the supervisor starts it again on the same data and port, counts the restart
// (`stack.sh status` shows it), the replica replicates again, and `stack.sh stop` shuts both down cleanly (TERM,
// and mariadbd finishes its shutdown; no KILL).
func TestMariaDBSupervisedRestartsAfterKill(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pzdb") // short: unix socket paths must stay under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{Root: root, Dir: dir, Ports: ports, env: append(os.Environ(),
		"STATE_DIR="+dir,
		"MYSQL_PORT="+strconv.Itoa(ports.MySQL),
		"MYSQL_REPLICA_PORT="+strconv.Itoa(ports.MySQLReplica),
		"DB_REPLICAS=1",
	)}
	t.Cleanup(func() {
		if out, err := s.Script(3*time.Minute, "stack.sh", "stop"); err != nil {
			t.Errorf("stack.sh stop: %v\n%s", err, out)
		}
		if t.Failed() {
			s.DumpLogs(os.Stderr)
		}
		_ = os.RemoveAll(dir)
	})
	if out, err := s.Script(5*time.Minute, "stack.sh", "start-mariadb"); err != nil {
		t.Fatalf("stack.sh start-mariadb: %v\n%s", err, out)
	}

	servers := []struct {
		name string
		port int
	}{{"mariadb", ports.MySQL}, {"mariadb-replica", ports.MySQLReplica}}
	for _, srv := range servers {
		before, err := s.Restarts(srv.name)
		if err != nil {
			t.Fatalf("%s is not supervised (no restart count): %v", srv.name, err)
		}
		pid, err := s.Pid(srv.name)
		if err != nil {
			t.Fatalf("%s is not supervised (no child pid): %v", srv.name, err)
		}
		if comm := readFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(comm) != "mariadbd" {
			t.Fatalf("%s's supervised process is %q, want mariadbd itself (so TERM reaches the server)", srv.name, comm)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		var last error
		for {
			if last = serverBack(s, srv.name, srv.port, pid, before); last == nil {
				break
			}
			if time.Since(killed) > 60*time.Second {
				t.Fatalf("%s not back 60 s after kill -9: %v", srv.name, last)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("%s: killed pid %d, back and answering on :%d after %s", srv.name, pid, srv.port, time.Since(killed).Round(10*time.Millisecond))
	}

	// The replica, itself restarted, follows the restarted primary.
	mustRootSQL(t, s, "mariadb", "CREATE DATABASE supervised; CREATE TABLE supervised.t (id INT PRIMARY KEY); INSERT INTO supervised.t VALUES (42);")
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := rootSQL(s, "mariadb-replica", "SELECT id FROM supervised.t")
		if err == nil && strings.TrimSpace(out) == "42" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica does not replicate after the restarts: %v %q", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	out, err := s.Script(time.Minute, "stack.sh", "status")
	for _, srv := range servers { // status exits 3 when some process of the stack is stopped: the others are
		if !regexp.MustCompile(`(?m)^` + srv.name + `\s+running \(pid \d+\), restarts: 1$`).MatchString(out) {
			t.Errorf("stack.sh status does not show %s running after 1 restart (%v):\n%s", srv.name, err, out)
		}
	}

	pids := map[string]int{}
	for _, srv := range servers {
		pids[srv.name], _ = s.Pid(srv.name)
	}
	out, err = s.Script(3*time.Minute, "stack.sh", "stop")
	if err != nil || strings.Contains(out, "KILL") {
		t.Fatalf("stack.sh stop: %v\n%s", err, out)
	}
	for _, srv := range servers {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pids[srv.name])); err == nil {
			t.Errorf("%s's mariadbd (pid %d) still runs after stack.sh stop", srv.name, pids[srv.name])
		}
		// One clean shutdown per stop; the kill -9 left none.
		if n := strings.Count(readFile(filepath.Join(dir, "logs", srv.name+".log")), "mariadbd: Shutdown complete"); n != 1 {
			t.Errorf("%s's log shows %d completed shutdowns, want 1 (the stop's)", srv.name, n)
		}
	}
}

// serverBack reports why the supervised server NAME, killed as pid, is not yet back: a restart counted, a new
// mariadbd, root answering on its socket and the MariaDB handshake on its TCP port.
func serverBack(s *Stack, name string, port, pid, before int) error {
	if n, err := s.Restarts(name); err != nil || n <= before {
		return fmt.Errorf("restart count %d (%v), want > %d", n, err, before)
	}
	now, err := s.Pid(name)
	if err != nil || now == pid {
		return fmt.Errorf("no new mariadbd yet (pid %d, %v)", now, err)
	}
	if out, err := s.Script(30*time.Second, "mariadb.sh", "ready", filepath.Join(s.Dir, name)); err != nil {
		return fmt.Errorf("root does not answer over the socket: %v %s", err, out)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	greeting := make([]byte, 128)
	n, _ := c.Read(greeting)
	if !strings.Contains(string(greeting[:n]), "MariaDB") {
		return fmt.Errorf("port %d answers %q, not MariaDB's handshake", port, greeting[:n])
	}
	return nil
}

// rootSQL runs SQL as root on the server of the stack process NAME (scripts/mariadb.sh sql).
func rootSQL(s *Stack, name, sqlText string) (string, error) {
	return s.scriptIn(30*time.Second, sqlText, "mariadb.sh", "sql", filepath.Join(s.Dir, name), "-N")
}

func mustRootSQL(t *testing.T, s *Stack, name, sqlText string) {
	t.Helper()
	if out, err := rootSQL(s, name, sqlText); err != nil {
		t.Fatalf("SQL on %s: %v\n%s", name, err, out)
	}
}
