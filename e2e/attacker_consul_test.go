package e2e

// An attacker who starts a Consul agent of their own, with the stack's own consul binary, to join the cluster as a
// server (a raft voter receives the replicated state, ACL token secrets included, and can take the leadership) or
// as a client. The host filter keeps other accounts off Consul's server ports (TestAttackerReachesNoGuardedPort);
// these tests run the rogue as root, past the filter, because the gossip key and RPC TLS are the next layer and
// the only one where no filter exists (a container on the Compose network). See-red runs: the commit messages.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rogueAddr is a loopback address no stack uses: the rogue agents bind it, so their members and raft entries are
// recognisable by address as well as by name.
const rogueAddr = "127.0.0.9"

// A rogue server and a rogue client agent, without the gossip key or a certificate, retry joining the stack's
// server for 30 s (the issue saw a rogue server become a raft voter within 25 s); neither may show up in the
// server's members or raft configuration at any moment of that window. Positive control: the real server is an
// alive member and the raft leader, and each rogue keeps running and keeps trying.
func TestAttackerRogueConsulAgentNeverJoins(t *testing.T) {
	self, err := consul(t).Agent().NodeName()
	if err != nil {
		t.Fatal(err)
	}
	join := net.JoinHostPort("127.0.0.1", strconv.Itoa(stack.Ports.ConsulSerfLAN))
	rogues := []*rogueAgent{
		startRogue(t, "rogue-server", join, "-server"),
		startRogue(t, "rogue-client", join),
	}

	const window = 30 * time.Second
	deadline := time.Now().Add(window)
	checks := 0
	for time.Now().Before(deadline) {
		if err := realServerHealthy(t, self); err != nil {
			t.Fatalf("positive control: %v", err)
		}
		for _, r := range rogues {
			if where := joined(t, r.name); where != "" {
				t.Fatalf("%s joined the stack's Consul after %d checks: %s\nits log:\n%s", r.name, checks, where, r.log())
			}
			if r.exited() {
				t.Fatalf("%s exited, so it no longer tries to join (nothing tested):\n%s", r.name, r.log())
			}
		}
		checks++
		time.Sleep(500 * time.Millisecond)
	}
	// Each rogue must really have tried the server's serf port, or the window proved nothing.
	for _, r := range rogues {
		if !strings.Contains(r.log(), join) {
			t.Fatalf("%s never tried %s:\n%s", r.name, join, r.log())
		}
	}
	t.Logf("%d checks over %s: no rogue in the members or the raft configuration", checks, window)
}

// The server's RPC port, reached past the host filter (as root), answers no RPC in plain TCP and none over TLS
// without a client certificate from the project's CA; with the server's own certificate (positive control) it
// answers, and presents the name agents check (server.dc1.consul).
func TestAttackerConsulRPCNeedsACertificate(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(stack.Ports.ConsulServer))
	roots := x509.NewCertPool()
	ca, err := os.ReadFile(stack.CACert)
	if err != nil || !roots.AppendCertsFromPEM(ca) {
		t.Fatalf("project CA %s: %v", stack.CACert, err)
	}
	certs := filepath.Dir(stack.CACert)
	own, err := tls.LoadX509KeyPair(filepath.Join(certs, "consul-rpc.pem"), filepath.Join(certs, "consul-rpc-key.pem"))
	if err != nil {
		t.Fatalf("the server's RPC certificate: %v", err)
	}
	withCert := &tls.Config{RootCAs: roots, ServerName: "server.dc1.consul", Certificates: []tls.Certificate{own}}
	noCert := &tls.Config{RootCAs: roots, ServerName: "server.dc1.consul"}

	cases := []struct {
		name   string
		tls    *tls.Config
		answer bool
	}{
		{"plain RPC", nil, false},
		{"TLS without a client certificate", noCert, false},
		{"TLS with the server's own certificate (positive control)", withCert, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := rpcPing(addr, c.tls)
			switch {
			case c.answer && err != nil:
				t.Fatalf("Status.Ping: %v; want an answer", err)
			case !c.answer && err == nil:
				t.Fatal("Status.Ping answered; want the connection refused")
			}
		})
	}
}

// Consul's RPC connection types (the first byte on the server port; agent/pool in Consul).
const (
	rpcConsul = 0x00
	rpcTLS    = 0x03
)

// statusPing is a msgpack-rpc request for Status.Ping (header {ServiceMethod, Seq}, then the empty argument), which
// a server answers to anyone it lets in.
var statusPing = []byte("\x82\xadServiceMethod\xabStatus.Ping\xa3Seq\x00\x80")

// rpcPing sends Status.Ping to a Consul server port, in plain TCP or (cfg not nil) in TLS, and returns nil once
// any answer comes back.
func rpcPing(addr string, cfg *tls.Config) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	var conn net.Conn = raw
	if cfg != nil {
		if _, err := raw.Write([]byte{rpcTLS}); err != nil {
			return err
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	if _, err := conn.Write(append([]byte{rpcConsul}, statusPing...)); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		return fmt.Errorf("no answer: %w", err)
	}
	return nil
}

// realServerHealthy: the stack's server is an alive member, and the raft configuration's leader and voter.
func realServerHealthy(t *testing.T, self string) error {
	members, err := consul(t).Agent().Members(false)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	alive := false
	for _, m := range members {
		alive = alive || m.Name == self && m.Status == 1 && m.Tags["role"] == "consul"
	}
	if !alive {
		return fmt.Errorf("the server %s is not an alive server member: %+v", self, members)
	}
	raft, err := consul(t).Operator().RaftGetConfiguration(nil)
	if err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	for _, s := range raft.Servers {
		if s.Node == self && s.Leader && s.Voter {
			return nil
		}
	}
	return fmt.Errorf("the server %s is not the raft leader: %+v", self, raft.Servers)
}

// joined says where the rogue named name shows up (members or raft configuration), or "" if nowhere.
func joined(t *testing.T, name string) string {
	var where []string
	members, err := consul(t).Agent().Members(false)
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	for _, m := range members {
		if m.Name == name || m.Addr == rogueAddr {
			where = append(where, fmt.Sprintf("member %s at %s, status %d, role %s", m.Name, m.Addr, m.Status, m.Tags["role"]))
		}
	}
	raft, err := consul(t).Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatalf("raft configuration: %v", err)
	}
	for _, s := range raft.Servers {
		if s.Node == name || strings.HasPrefix(s.Address, rogueAddr+":") {
			where = append(where, fmt.Sprintf("raft server %s at %s, voter %v, leader %v", s.Node, s.Address, s.Voter, s.Leader))
		}
	}
	return strings.Join(where, "; ")
}

// rogueAgent is a consul agent the test started; its combined output is kept for the failure message.
type rogueAgent struct {
	name string
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (r *rogueAgent) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(p)
}

func (r *rogueAgent) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

func (r *rogueAgent) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// startRogue runs the stack's consul binary as an agent named name on rogueAddr, with a data folder of its own
// and no gossip key, certificate or token, retrying join every second; it is stopped when the test ends.
func startRogue(t *testing.T, name, join string, extra ...string) *rogueAgent {
	t.Helper()
	bin, err := stack.Script(20*time.Minute, "tools.sh", "ensure", "consul")
	if err != nil {
		t.Fatalf("tools.sh ensure consul: %v\n%s", err, bin)
	}
	lines := strings.Split(strings.TrimSpace(bin), "\n")
	args := []string{"agent", "-node=" + name, "-data-dir=" + t.TempDir(), "-bind=" + rogueAddr, "-client=" + rogueAddr,
		"-retry-join=" + join, "-retry-interval=1s", "-disable-host-node-id"}
	for _, flag := range []string{"-server-port", "-serf-lan-port", "-serf-wan-port", "-http-port", "-dns-port", "-grpc-port",
		"-grpc-tls-port"} {
		args = append(args, fmt.Sprintf("%s=%d", flag, freeRoguePort(t)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, lines[len(lines)-1], append(args, extra...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"} // nothing of the stack's settings
	r := &rogueAgent{name: name, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r, r
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		// A rogue that did get in leaves the cluster with a failed member; the next tests must not see it.
		if where := joined(t, name); where != "" {
			_ = consul(t).Agent().ForceLeavePrune(name)
		}
	})
	return r
}

// freeRoguePort is a port free on rogueAddr for TCP (the agents' UDP serf ports are free alike in practice).
func freeRoguePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(rogueAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
