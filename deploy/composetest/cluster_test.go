package composetest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/pizzajoint/mesh/internal/eventsource"
)

// The control plane's clusters lose a node while 4 clients order (Idempotency-Keys, retries) and 3 customers
// follow their orders' streams as a kitchen moves them along. Each fault must lose no acknowledged order and
// store none twice; every customer stream must hold exactly its order's events. Each logs one row of the
// README's fault table.

// faultWindow is what a fault reports: when the cluster had a leader again (election), and when it was whole.
type faultWindow struct {
	election time.Duration // from the fault until a (new) leader served; 0 if the leader was not touched
	whole    time.Duration // from the fault until every node was back and healthy
}

// faultBound says how many attempts a fault may fail, from its mechanism.
type faultBound struct {
	// none: the fault is off the order path, so no attempt may fail; why says why.
	none bool
	why  string
}

// underLoad runs fault against the stack under load and checks what customers saw.
func underLoad(t *testing.T, name string, bound faultBound, fault func(t *testing.T) faultWindow) {
	prefix := runPrefix(name)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Three customers, each following its order's stream from the start.
	const customers = 3
	orders := make([]placed, customers)
	follows := make([]*eventsource.Source, customers)
	streamClient := &http.Client{Transport: st.http.Transport} // no overall timeout: a stream stays open
	acked := map[string]string{}
	for i := range orders {
		key := fmt.Sprintf("%s-c-%d", prefix, i)
		code, p, err := placeOrder(key)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("customer %d's order: %d %v", i, code, err)
		}
		orders[i], acked[key] = p, p.ID
		follows[i] = eventsource.Follow(ctx, eventsource.Config{HTTP: streamClient, Retry: 500 * time.Millisecond,
			URL:  st.url("/pizza/" + p.ID + "/events?token=" + p.TrackingToken),
			Last: func(f eventsource.Frame) bool { return strings.Contains(f.Data, `"status":"DELIVERED"`) }})
	}
	staff := strings.TrimSpace(st.meshctlT(t, "token", "staff", name))
	targets := map[string][]string{}
	for _, o := range orders {
		targets[o.ID] = []string{"ACCEPTED", "BAKING", "OUT_FOR_DELIVERY", "DELIVERED"}
	}

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt()
	var res *loadResult
	loadDone := make(chan struct{})
	go func() { res = closedLoop(prefix, 4, stop); close(loadDone) }()
	kitchenDone := make(chan []string, 1)
	go func() {
		// 12 status changes spread over the fault: a change every 1.5 s, retried until the kitchen is done.
		_, failed := kitchen(ctx, staff, targets, 1500*time.Millisecond)
		kitchenDone <- failed
	}()
	time.Sleep(3 * time.Second)

	began := time.Now()
	w := fault(t)
	time.Sleep(3 * time.Second)
	halt()
	<-loadDone
	kitchenFailed := <-kitchenDone

	for k, v := range res.acked {
		acked[k] = v
	}
	storedOnce(t, acked, prefix)
	gap := longestAckGap(res.ackedAt, began.Add(-2*time.Second), began.Add(w.whole+2*time.Second))
	t.Logf("fault table | %s | %d acknowledged and stored | %d failed attempts | longest gap without an ack %v | "+
		"election %v | whole again %v | %d kitchen changes failed", name, len(acked), res.failedAttempts,
		gap.Round(time.Millisecond), w.election.Round(time.Millisecond), w.whole.Round(time.Millisecond), len(kitchenFailed))

	switch {
	case bound.none && res.failedAttempts > 0:
		t.Errorf("%d order attempts failed (first %v after the fault); none may: %s", res.failedAttempts,
			res.firstFail.Sub(began).Round(time.Millisecond), bound.why)
	case !bound.none && res.failedAttempts > 0:
		// Attempts fail only from the fault until a leader serves again, plus one call in flight then (the
		// client's timeout); each client retries after retryPause, so it fails at most once per pause.
		window := w.election + st.http.Timeout
		if res.firstFail.Before(began) {
			t.Errorf("an attempt failed %v before the fault", began.Sub(res.firstFail).Round(time.Millisecond))
		}
		if late := res.lastFail.Sub(began); late > window {
			t.Errorf("an attempt failed %v after the fault, past the election and a call's timeout (%v)", late.Round(time.Millisecond), window)
		}
		if most := 4 * (int(window/retryPause) + 1); res.failedAttempts > most {
			t.Errorf("%d failed attempts; 4 clients pausing %v within %v can fail at most %d times", res.failedAttempts,
				retryPause, window, most)
		}
	}

	// Every customer's stream holds its order's events, once each, in order. The kitchen's changes may fail
	// while a leader is elected (it does not retry), so the table says what the stream must hold.
	byOrder, _ := eventLog(t, prefix)
	for wait := time.Now().Add(30 * time.Second); time.Now().Before(wait); time.Sleep(250 * time.Millisecond) {
		done := true
		for i, f := range follows {
			done = done && len(f.Frames()) >= len(byOrder[orders[i].ID])
		}
		if done {
			break
		}
	}
	time.Sleep(500 * time.Millisecond) // a repeat arriving late shows too
	cancel()
	for i, f := range follows {
		if got, want := eventIDs(framesOf(t, f)), byOrder[orders[i].ID]; !slices.Equal(got, want) {
			t.Errorf("customer %d's stream got events %v, want %v", i, got, want)
		}
	}
}

// longestAckGap is the longest time between two consecutive acknowledgements within [from, to].
func longestAckGap(at []time.Time, from, to time.Time) time.Duration {
	at = slices.Clone(at)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var longest time.Duration
	for i := 1; i < len(at); i++ {
		if at[i].Before(from) || at[i-1].After(to) {
			continue
		}
		longest = max(longest, at[i].Sub(at[i-1]))
	}
	return longest
}

// crash kills a container's process as a crash would: SIGKILL (`docker kill` counts as an operator's stop, and
// the engine then skips the restart policy). It returns the restart count before the kill.
func crash(t *testing.T, service string) int {
	t.Helper()
	before := atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.RestartCount}}", st.container(service)))
	pid := atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.State.Pid}}", st.container(service)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s's process %d: %v", service, pid, err)
	}
	return before
}

// waitBack waits until service has restarted since before and ok says it serves again. (Docker's own health
// status lags: its checks time out on a loaded machine.)
func waitBack(t *testing.T, service string, before int, deadline time.Time, ok func() bool) {
	t.Helper()
	for atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.RestartCount}}", st.container(service))) == before || !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not back and serving in time", service)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// inside runs a command in a running container and reports whether it exited 0.
func inside(service string, args ...string) bool {
	_, err := st.cmd(30*time.Second, "docker", append([]string{"exec", st.container(service)}, args...)...)
	return err == nil
}

// consulServedBy: the server in that pod answers a consistent read, which needs a leader that has caught up.
func consulServedBy(n int) bool {
	return inside(fmt.Sprintf("consul-%d-front", n), "/usr/local/bin/meshctl", "probe",
		"http://127.0.0.1:8500/v1/catalog/nodes?consistent")
}

// vaultActive: the node answers sys/health with 200, which only the active node does.
func vaultActive(n int) bool {
	return inside(fmt.Sprintf("vault-%d", n), "/usr/local/bin/meshctl", "probe", "-cacert", "/vault/tls/ca.pem",
		"https://localhost:8200/v1/sys/health")
}

// consulLeader is the number N of the consul-N server that leads raft, read with an operator token.
func consulLeader(t *testing.T, c *consul.Client) int {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		raft, err := c.Operator().RaftGetConfiguration(nil)
		if err == nil {
			voters := 0
			leader := 0
			for _, s := range raft.Servers {
				if s.Voter {
					voters++
				}
				if s.Leader {
					fmt.Sscanf(s.Node, "consul-%d", &leader)
				}
			}
			if voters == 3 && leader > 0 {
				return leader
			}
			err = fmt.Errorf("%d voters, leader %d: %+v", voters, leader, raft.Servers)
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul has no leader among three voters: %v", err)
		}
	}
}

// vaultLeader is the number N of the active vault-N node.
func vaultLeader(t *testing.T) int {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		for n := 1; n <= 3; n++ {
			if vaultActive(n) {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no vault node is active")
		}
	}
}

// others are the two node numbers other than n.
func others(n int) []int {
	return slices.DeleteFunc([]int{1, 2, 3}, func(m int) bool { return m == n })
}

// untilAny polls ok on each of nodes until one says yes; it returns how long that took from since.
func untilAny(t *testing.T, what string, since time.Time, nodes []int, ok func(int) bool) time.Duration {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		for _, n := range nodes {
			if ok(n) {
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 2 minutes", what)
		}
	}
}

// killLeaderUnderLoad crashes the container victim, which runs node leader of a three-node cluster, under
// load: the fault window ends when one of the other two nodes leads (what, told by leads) and the victim is
// back in the cluster (back).
func killLeaderUnderLoad(t *testing.T, name string, bound faultBound, victim string, leader int, what string,
	leads, back func(n int) bool) {
	t.Helper()
	underLoad(t, name, bound, func(t *testing.T) faultWindow {
		before := crash(t, victim)
		killed := time.Now()
		var w faultWindow
		w.election = untilAny(t, what, killed, others(leader), leads)
		waitBack(t, victim, before, killed.Add(3*time.Minute), func() bool { return back(leader) })
		w.whole = time.Since(killed)
		return w
	})
}

// Orders need no Consul server while the mesh does not change: each sidecar authorizes connections and holds its
// leaf certificate from its own agent's cache, and the agents keep their ACLs (down_policy extend-cache).
var offTheOrderPath = faultBound{none: true, why: "the order path needs no Consul server (agents' caches)"}

func TestConsulLeaderKilledUnderLoad(t *testing.T) {
	c := operatorConsul(t)
	leader := consulLeader(t, c)
	victim := fmt.Sprintf("consul-%d-server", leader)
	killLeaderUnderLoad(t, "consulkill", offTheOrderPath, victim, leader, "a new consul leader", consulServedBy, consulServedBy)
	t.Logf("consul after the kill of %s: leader consul-%d", victim, consulLeader(t, c))
}

func TestConsulServerPartitionedUnderLoad(t *testing.T) {
	c := operatorConsul(t)
	leader := consulLeader(t, c)
	pod := st.container(fmt.Sprintf("consul-%d", leader))
	network := st.project + "_mesh"
	underLoad(t, "consulsplit", offTheOrderPath, func(t *testing.T) faultWindow {
		st.cmdT(t, "docker", "network", "disconnect", network, pod)
		cut := time.Now()
		var w faultWindow
		w.election = untilAny(t, "a leader on the majority side", cut, others(leader), consulServedBy)
		time.Sleep(5 * time.Second) // the minority server stays cut off a while
		st.cmdT(t, "docker", "network", "connect", "--alias", "consul", network, pod)
		// Whole again: three voters with a leader, the cut server a healthy follower.
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
			health, err := c.Operator().AutopilotServerHealth(nil)
			if err == nil && health.Healthy && len(health.Servers) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("consul not healthy with three servers within 2 minutes of the heal: %+v, %v", health, err)
			}
		}
		w.whole = time.Since(cut)
		return w
	})
	t.Logf("consul after the partition of consul-%d: leader consul-%d", leader, consulLeader(t, c))
}

func TestVaultActiveNodeKilledUnderLoad(t *testing.T) {
	active := vaultLeader(t)
	victim := fmt.Sprintf("vault-%d", active)
	// Orders use Vault only for a data key once in a while and for leases, all renewed ahead of time, so a standby
	// taking over costs no order; the bound says so, and a failure says where that is not true.
	bound := faultBound{none: true, why: "order's Vault calls (leases, data keys) are off the request path"}
	// The unsealer unseals the node that comes back; it joins as a standby.
	killLeaderUnderLoad(t, "vaultkill", bound, victim, active, "a standby taking over", vaultActive, vaultUnsealed)
	code, _, err := placeOrder(runPrefix("after-vault"))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("POST /pizza after the active Vault node's crash = %d, %v", code, err)
	}
	t.Logf("vault after the kill of %s: active vault-%d", victim, vaultLeader(t))
}

// vaultUnsealed: the node answers sys/health as an unsealed active or standby node.
func vaultUnsealed(n int) bool {
	return inside(fmt.Sprintf("vault-%d", n), "/usr/local/bin/meshctl", "probe", "-cacert", "/vault/tls/ca.pem",
		"https://localhost:8200/v1/sys/health?standbyok=true&perfstandbyok=true")
}

// The status an operator reads: both clusters with three voters, one leader each, all healthy.
func TestClusterStatusShowsBothClusters(t *testing.T) {
	out := st.meshctlT(t, "cluster", "status")
	for _, cluster := range []string{"consul", "vault"} {
		leaders := 0
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[0] == cluster && f[3] == "leader" {
				leaders++
			}
		}
		if healthy := healthyPeers(out, cluster); leaders != 1 || healthy != 3 {
			t.Errorf("%s: %d leaders and %d healthy peers, want 1 and 3:\n%s", cluster, leaders, healthy, out)
		}
	}
	t.Logf("meshctl cluster status:\n%s", out)
}

// A server whose data is lost for good is replaced as the README's runbook says: the dead peer removed from raft,
// its container and volume gone, then `up` again; a new, empty server joins and the cluster is whole. Consul's
// and Vault's, one follower each (the leader keeps serving meanwhile).
func TestReplaceADeadServer(t *testing.T) {
	c := operatorConsul(t)
	consulVictim := others(consulLeader(t, c))[1]
	vaultVictim := others(vaultLeader(t))[1]
	cn, vn := fmt.Sprintf("consul-%d", consulVictim), fmt.Sprintf("vault-%d", vaultVictim)
	for _, v := range []struct {
		cluster, node, volume string
		services              []string
	}{
		{"consul", cn, cn + "-data", []string{cn + "-front", cn + "-server", cn}},
		{"vault", vn, vn + "-data", []string{vn}},
	} {
		// The node is gone and its disk with it: its containers stop and its volume is deleted.
		st.composeT(t, append([]string{"rm", "-sf"}, v.services...)...)
		st.cmdT(t, "docker", "volume", "rm", st.project+"_"+v.volume)
		st.meshctlT(t, "cluster", "remove-peer", v.cluster, v.node)
		if out := st.meshctlT(t, "cluster", "status"); peerListed(out, v.cluster, v.node) {
			t.Fatalf("%s still a raft peer after remove-peer:\n%s", v.node, out)
		}
	}
	t0 := time.Now()
	if out, err := st.compose(5*time.Minute, "up", "-d", "--wait", "--wait-timeout", "240"); err != nil {
		t.Fatalf("up after the replacement: %v\n%s", err, out)
	}
	var out string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		out = st.meshctlT(t, "cluster", "status")
		if healthyPeers(out, "consul") == 3 && healthyPeers(out, "vault") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clusters were not whole with the new servers within 2 minutes:\n%s", out)
		}
	}
	t.Logf("consul-%d and vault-%d replaced by empty servers: whole again %v after up\n%s", consulVictim, vaultVictim,
		time.Since(t0).Round(time.Second), out)
	if code, _, err := placeOrder(runPrefix("replaced")); err != nil || code != http.StatusCreated {
		t.Fatalf("POST /pizza after the replacement = %d, %v", code, err)
	}
}

// peerListed: `meshctl cluster status` lists node in cluster.
func peerListed(status, cluster, node string) bool {
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == cluster && f[1] == node {
			return true
		}
	}
	return false
}

// healthyPeers counts cluster's healthy voters in `meshctl cluster status`.
func healthyPeers(status, cluster string) int {
	n := 0
	for _, line := range strings.Split(status, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[0] == cluster && f[len(f)-1] == "true" && f[3] != "non-voter" {
			n++
		}
	}
	return n
}

// The runbook's Connect CA rotation on the three servers under load: a new root from Vault's PKI, cross-signed
// by the old one, so leaves of either root are trusted while the agents replace them; no order may fail.
func TestConnectCARotatedUnderLoad(t *testing.T) {
	c := operatorConsul(t)
	activeRoot := func() string {
		roots, _, err := c.Connect().CARoots(nil)
		if err != nil {
			t.Fatalf("connect CA roots: %v", err)
		}
		return roots.ActiveRootID
	}
	before := activeRoot()
	bound := faultBound{none: true, why: "the new root is cross-signed: old and new leaves are trusted throughout"}
	underLoad(t, "connectca", bound, func(t *testing.T) faultWindow {
		began := time.Now()
		st.meshctlT(t, "rotate", "connect-ca")
		if now := activeRoot(); now == before {
			t.Fatalf("the active Connect root is still %s after the rotation", before)
		}
		// The agents replace their sidecars' leaves within seconds of the new root; keep the load on meanwhile.
		time.Sleep(10 * time.Second)
		return faultWindow{whole: time.Since(began)}
	})
}
