// Package natstest starts real NATS servers with JetStream for tests: the pinned nats-server that the stack runs
// (scripts/tools.sh builds it when it is missing), on a free port, with its store in the test's temporary folder
// and the durability settings the stack uses. Tests can stop, kill and restart it on the same port and store.
package natstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pizzajoint/mesh/internal/testkit"
)

const readyTimeout = 30 * time.Second

// Server is one nats-server process started by a test.
type Server struct {
	t       testing.TB
	bin     string
	conf    string
	port    int
	monitor int // the monitoring port; 0: none
	logFile string
	cmd     *exec.Cmd
	done    chan struct{}
}

// Binary returns the pinned nats-server, building it once when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "scripts", "tools.sh"), "ensure", "nats-server")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("natstest: no nats-server: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Start runs a JetStream server for the test, stopped at its end. extra is appended to its config file (accounts,
// authorization). The store fsyncs every write (sync_interval: always), as the stack's servers do.
func Start(t testing.TB, extra string) *Server {
	t.Helper()
	return start(t, extra, false)
}

// StartMonitored is Start with the monitoring endpoint (MonitorURL) on, as the stack's server has it.
func StartMonitored(t testing.TB, extra string) *Server {
	t.Helper()
	return start(t, extra, true)
}

func start(t testing.TB, extra string, monitored bool) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{t: t, bin: Binary(t), port: testkit.FreePort(t), conf: filepath.Join(dir, "nats.conf"),
		logFile: filepath.Join(dir, "nats.log")}
	if monitored {
		s.monitor = testkit.FreePort(t)
	}
	s.writeConfig(filepath.Join(dir, "store"), extra)
	s.start()
	t.Cleanup(func() { s.Kill() })
	return s
}

func (s *Server) writeConfig(store, extra string) {
	s.t.Helper()
	conf := fmt.Sprintf("listen: 127.0.0.1:%d\nserver_name: natstest\njetstream { store_dir: %q, sync_interval: always }\n",
		s.port, store)
	if s.monitor != 0 {
		conf += fmt.Sprintf("http: 127.0.0.1:%d\n", s.monitor)
	}
	if err := os.WriteFile(s.conf, []byte(conf+extra+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// Reconfigure replaces the config's extra part and has the running server reread its config (SIGHUP), as the
// stack does when its authorization changed. It returns once the server logged the reload.
func (s *Server) Reconfigure(extra string) {
	s.t.Helper()
	s.writeConfig(filepath.Join(filepath.Dir(s.conf), "store"), extra)
	before := strings.Count(s.Log(), "Reloaded server configuration")
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		s.t.Fatalf("natstest: reload: %v", err)
	}
	deadline := time.Now().Add(readyTimeout)
	for strings.Count(s.Log(), "Reloaded server configuration") == before {
		if time.Now().After(deadline) {
			s.t.Fatalf("natstest: no reload in %s:\n%s", readyTimeout, s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MonitorURL is the monitoring endpoint's URL ("" unless started with StartMonitored).
func (s *Server) MonitorURL() string {
	if s.monitor == 0 {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d", s.monitor)
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Connect opens a client connection closed at the test's end, with opts (credentials) added.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	// Asynchronous errors (a refused publish) go to the test's log, not to stderr.
	logErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { s.t.Logf("natstest: client: %v", err) })
	nc, err := nats.Connect(s.URL(), append([]nats.Option{nats.Timeout(5 * time.Second), logErr}, opts...)...)
	if err != nil {
		s.t.Fatalf("natstest: connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

func (s *Server) start() {
	s.t.Helper()
	log, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(s.bin, "-c", s.conf)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		log.Close()
		s.t.Fatalf("natstest: start nats-server: %v", err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); log.Close(); close(done) }(s.cmd)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		select {
		case <-done:
			s.t.Fatalf("natstest: nats-server exited at start:\n%s", s.Log())
		case <-ctx.Done():
			s.t.Fatalf("natstest: nats-server not ready in %s:\n%s", readyTimeout, s.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second); err == nil {
			c.Close()
			if strings.Contains(s.Log(), "Server is ready") {
				return
			}
		}
	}
}

// Stop ends the server cleanly (SIGTERM) and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL: no flush, no goodbye to clients.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// Restart starts the server again on the same port and store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Log is the server's output so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// Connections counts the open connections authorized as the nkey pub on the server whose monitoring endpoint is
// monitorURL (http://host:port).
func Connections(t testing.TB, monitorURL, pub string) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/connz?auth=true&user=%s", monitorURL, pub))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		Connections []struct {
			User string `json:"authorized_user"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, conn := range c.Connections {
		if conn.User == pub { // filtered by the server already; an older one may ignore the filter
			n++
		}
	}
	return n
}
