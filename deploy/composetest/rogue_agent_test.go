package composetest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// A container on the Compose network starts the stack's own Consul image as a server and as a client agent,
// with no gossip key and no certificate, and retries joining the server (`consul`, the pod's name on the network)
// for 30 s. Neither may show up in the server's members or raft configuration at any moment of that window.
// Positive controls: the real server stays an alive member and the raft leader, and each rogue keeps running
// and really tries to join. The local stack's version of this attack is e2e/attacker_consul_test.go. Seen red
// with the gossip key's volume mounted into the rogues: "rogue-server joined the stack's Consul after 0 checks:
// member rogue-server …; raft server rogue-server … voter false" (the key alone makes a server a raft non-voter;
// RPC TLS is what keeps it from the replicated state).
func TestRogueAgentOnTheNetworkNeverJoins(t *testing.T) {
	c := operatorConsul(t)
	rogues := []string{startRogueContainer(t, "rogue-server", "-server"), startRogueContainer(t, "rogue-client")}

	const window = 30 * time.Second
	deadline := time.Now().Add(window)
	checks := 0
	for time.Now().Before(deadline) {
		if err := serverIsLeader(c); err != nil {
			t.Fatalf("positive control: %v", err)
		}
		for _, name := range rogues {
			if where := rogueJoined(t, c, name); where != "" {
				t.Fatalf("%s joined the stack's Consul after %d checks: %s\nits log:\n%s", name, checks, where, rogueLog(name))
			}
			if state := strings.TrimSpace(st.cmdT(t, "docker", "inspect", "-f", "{{.State.Status}}", st.project+"-"+name)); state != "running" {
				t.Fatalf("%s is %s, so it no longer tries to join (nothing tested):\n%s", name, state, rogueLog(name))
			}
		}
		checks++
		time.Sleep(500 * time.Millisecond)
	}
	for _, name := range rogues {
		if log := rogueLog(name); !strings.Contains(log, `lan_addresses=["consul"]`) {
			t.Fatalf("%s never tried to join consul:\n%s", name, log)
		}
	}
	t.Logf("%d checks over %s: no rogue in the members or the raft configuration", checks, window)
}

// operatorConsul is a Consul client on the operators' HTTPS front with the runbook's token (node and operator
// read: members and the raft configuration).
func operatorConsul(t *testing.T) *consul.Client {
	t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address, cfg.Scheme = fmt.Sprintf("localhost:%d", st.uiPort), "https"
	cfg.Token, cfg.TokenFile = strings.TrimSpace(st.meshctlT(t, "token", "consul-operator")), ""
	cfg.TLSConfig = consul.TLSConfig{CAFile: st.caFile}
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startRogueContainer runs the stack's Consul image on the stack's network as an agent named name, joining
// `consul` with whatever extra flags (-server); it is removed when the test ends.
func startRogueContainer(t *testing.T, name string, flags ...string) string {
	t.Helper()
	container := st.project + "-" + name
	args := []string{"run", "-d", "--name", container, "--network", st.project + "_mesh",
		"pizzajoint/consul:" + imageTag(), "agent", "-node=" + name, "-data-dir=/consul/data",
		`-bind={{ GetInterfaceIP "eth0" }}`, "-client=127.0.0.1", "-retry-join=consul", "-retry-interval=2s",
		"-disable-host-node-id"}
	st.cmdT(t, "docker", append(args, flags...)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, rogueLog(name))
		}
		_, _ = st.cmd(time.Minute, "docker", "rm", "-f", "-v", container)
	})
	return name
}

func rogueLog(name string) string {
	out, _ := st.cmd(time.Minute, "docker", "logs", "--tail", "40", st.project+"-"+name)
	return out
}

// rogueJoined says where the server sees the agent called name: in its LAN members or its raft configuration.
func rogueJoined(t *testing.T, c *consul.Client, name string) string {
	t.Helper()
	var where []string
	members, err := c.Agent().Members(false)
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	for _, m := range members {
		if m.Name == name {
			where = append(where, fmt.Sprintf("member %s at %s, status %d, role %s", m.Name, m.Addr, m.Status, m.Tags["role"]))
		}
	}
	raft, err := c.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatalf("raft configuration: %v", err)
	}
	for _, s := range raft.Servers {
		if s.Node == name {
			where = append(where, fmt.Sprintf("raft server %s at %s, voter %v, leader %v", s.Node, s.Address, s.Voter, s.Leader))
		}
	}
	return strings.Join(where, "; ")
}

// serverIsLeader checks that one of the stack's three servers leads raft, and that raft holds no one else.
func serverIsLeader(c *consul.Client) error {
	raft, err := c.Operator().RaftGetConfiguration(nil)
	if err != nil {
		return fmt.Errorf("raft configuration: %w", err)
	}
	leader := ""
	for _, s := range raft.Servers {
		if !strings.HasPrefix(s.Node, "consul-") {
			return fmt.Errorf("raft holds %s: %+v", s.Node, raft.Servers)
		}
		if s.Leader {
			leader = s.Node
		}
	}
	if leader == "" || len(raft.Servers) != 3 {
		return fmt.Errorf("no leader among three stack servers: %+v", raft.Servers)
	}
	return nil
}
