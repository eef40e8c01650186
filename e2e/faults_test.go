package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/stacktest"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/orderclient"
)

// Fault injection on the running stack. Each case runs under the closed-loop load of load_test.go (four
// clients, an Idempotency-Key per order, a failed attempt retried after 200 ms with the same key) while three
// customers follow their orders' event streams across the fault. Every case asserts:
//   - every acknowledged order is stored exactly once (checkStoredOnce);
//   - no stream skips or repeats an event (each sees CREATED, ACCEPTED, BAKING once, ids rising, reconnecting
//     with Last-Event-ID when its stream ends, as EventSource does);
//   - the failed attempts and the outage window (the longest time without an acknowledgement) stay under a
//     bound derived, in the case's comment, from the mechanism that heals the fault.
//
// Figures the bounds use:
//   - loadClients clients; a client pauses 200 ms after a failed attempt (load_test.go);
//   - the gateway retries a call that failed before any response byte 6 times, 50 ms doubling: 1.55 s of
//     pauses (gateway/orderconn), so a refused connection costs a client nothing unless six in a row fail;
//   - Consul checks an order replica's readiness every 2 s with a 2 s timeout (platform/consulreg), and a
//     sidecar's listener every 10 s;
//   - the supervisor restarts a dead process after 1 s (scripts/supervise.sh);
//   - order's database dial timeout is 3 s (mysqlconn), and its pool retries a dead connection on a new one.
//
// The table of results is logged at the end (go test -v -run TestFaults).

const loadClients = 4

// slack covers this shared 2-core machine running race-built services: the bounds' mechanism figures are
// multiplied by it, never replaced by a guess.
const slack = 2

type faultCase struct {
	name string
	// inject causes the fault and returns once the stack reports it healed (the process is back, or the
	// dependency answers again); what it measured goes into the result.
	inject func(t *testing.T, r *faultResult)
	// maxFailed and maxOutage are the bounds; each case's comment derives them.
	maxFailed func(r *faultResult) int
	maxOutage func(r *faultResult) time.Duration
}

type faultResult struct {
	name                   string
	acked, stored, failed  int
	outage, down, recovery time.Duration // longest gap between acks; the fault until healed; first order after it
}

func TestFaults(t *testing.T) {
	var results []*faultResult
	cases := []faultCase{
		{
			// kill -9 of order replica 2; its supervisor starts it again after 1 s (with new credentials).
			// Replica 1 takes the traffic throughout. An attempt in flight on replica 2 gets a reset before any
			// response byte, which the gateway retries on a new connection; the gateway's sidecar drops
			// replica 2 once Consul's 2 s check sees it refuse (≤ 2 s + 2 s timeout = 4 s). A client's attempt
			// fails only if all six of the gateway's tries (1.55 s) land on the dead replica: at most
			// loadClients × ⌈4 s / 1.55 s⌉ = 12 failed attempts, and no gap longer than one retry chain
			// (1.55 s) plus one client pause (0.2 s) plus a round trip: ~2 s.
			name:      "kill -9 order replica",
			inject:    killAndAwaitRestart("order-2", func(t *testing.T) func() error { return orderReplicaServes(t, 2) }),
			maxFailed: func(*faultResult) int { return slack * loadClients * 3 },
			maxOutage: func(*faultResult) time.Duration { return slack * 2 * time.Second },
		},
		{
			// kill -9 of an order instance while transactions of new orders are open between their INSERTs and
			// COMMIT. The case starts that instance for itself (holdReplica, in the mesh like a replica) with
			// order's test-only hold hook, the only instance that has it, and sends it orders of its own so that
			// some are held. MariaDB sees the dead connections close and rolls them back, so their keys stay
			// free; each retry stores its order once (checked in inject). Load clients whose calls landed on the
			// held instance may each fail once for the hold (a call past the gateway's 5 s deadline, retried with
			// its key), plus the routing bound of the case above for the dead instance; the gap is ≤ down + that
			// case's 2 s.
			name:      "kill -9 order between INSERT and COMMIT",
			inject:    killBetweenInsertAndCommit,
			maxFailed: func(*faultResult) int { return slack * (loadClients + loadClients*3) },
			maxOutage: func(r *faultResult) time.Duration { return r.down + slack*2*time.Second },
		},
		{
			// MariaDB stopped (clean shutdown through `stack.sh stop-process mariadb`: its supervisor passes TERM
			// on and exits) and started again (`stack.sh start-mariadb`). While it is down, order answers 503 with
			// Retry-After (checked in inject). When it is back, a new connection is one dial (≤ 3 s timeout)
			// and database/sql drops broken connections and retries on new ones: the gap is ≤ down + 3 s.
			// Failed attempts are bounded by the load's own pacing (paced): a client pauses 200 ms after each.
			name:      "MariaDB stopped and started",
			inject:    restartMariaDB,
			maxFailed: func(r *faultResult) int { return paced(r.down + r.recovery) },
			maxOutage: func(r *faultResult) time.Duration { return r.down + slack*3*time.Second },
		},
		{
			// kill -9 of mariadbd, mid-write under the load; its supervisor starts it again after 1 s and InnoDB
			// recovers from its redo log, so every order acknowledged before the kill is still stored
			// (checkStoredOnce). The outage is as for the clean stop above, with down measured from the kill to
			// the server answering again: the same bounds.
			name:      "kill -9 MariaDB",
			inject:    crashMariaDB,
			maxFailed: func(r *faultResult) int { return paced(r.down + r.recovery) },
			maxOutage: func(r *faultResult) time.Duration { return r.down + slack*3*time.Second },
		},
		{
			// kill -9 of Vault; its supervisor starts it after 1 s and unseals it. Nothing on the order path
			// needs Vault but sealing PII with a data key, which order asks transit for every 3 s
			// (ORDER_PII_KEY_LIFETIME) and, while transit is away, keeps sealing with the one it has
			// (envelope.Keyring); database credentials are renewed off the path. An order can only fail while
			// Vault is away (down), so the failed attempts are bounded by the load's pacing over that window.
			name:      "Vault restarted",
			inject:    killAndAwaitRestart("vault", func(*testing.T) func() error { return vaultUnsealed }),
			maxFailed: func(r *faultResult) int { return paced(r.down) },
			maxOutage: func(r *faultResult) time.Duration { return r.down + slack*time.Second },
		},
		{
			// kill -9 of replica 1's sidecar; its supervisor starts it after 1 s. Until Consul's 10 s TCP check
			// marks it critical (or it is back), the gateway's sidecar may pick it: a refused connection the
			// gateway retries. As for a replica: a client fails only on six bad picks in a row, at most
			// loadClients × ⌈(10 s + 1 s) / 1.55 s⌉ = 32 attempts, and gaps stay ≤ 2 s.
			name:      "kill -9 order's sidecar",
			inject:    killAndAwaitRestart("sidecar-order-1", func(t *testing.T) func() error { return sidecarListening(t, "order-1") }),
			maxFailed: func(*faultResult) int { return slack * loadClients * 8 },
			maxOutage: func(*faultResult) time.Duration { return slack * 2 * time.Second },
		},
		{
			// Replica 2 reaches MySQL through a proxy that first adds latency, then resets every connection.
			// Latency only slows replica 2; resets break its pooled connections: a statement on a reset
			// connection fails (503 or a 5xx the client retries), database/sql then dials anew. One burst of
			// resets fails at most the statements in flight on replica 2: ≤ loadClients attempts per burst;
			// replica 1 keeps acknowledging, so gaps stay ≤ proxyDelay + 2 s.
			name:      "latency and resets between order and MySQL",
			inject:    proxiedDatabase,
			maxFailed: func(*faultResult) int { return slack * loadClients * resetBursts },
			maxOutage: func(*faultResult) time.Duration { return slack * (proxyDelay + 2*time.Second) },
		},
	}
	for _, c := range cases {
		r := &faultResult{name: c.name}
		results = append(results, r)
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) { runFault(t, c, r) })
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| fault | acknowledged | stored | failed attempts | outage window | fault lasted |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s |\n", r.name, r.acked, r.stored, r.failed,
			r.outage.Round(10*time.Millisecond), r.down.Round(10*time.Millisecond))
	}
	t.Log(b.String())
}

// paced is the most failed attempts the load's own pacing allows while a fault lasts window: each client
// has one attempt in flight and pauses loadPause after a failed one, so the attempts it starts within the
// window are at most window/loadPause + 1, and one more may have started before the fault and fail in it.
// No slack: a slower machine only spaces attempts further apart.
func paced(window time.Duration) int {
	return loadClients * (int(window/loadPause) + 2)
}

func runFault(t *testing.T, c faultCase, r *faultResult) {
	prefix := fmt.Sprintf("fault-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	followers := make([]*follower, 3)
	for i := range followers {
		id, token := placeTracked(t)
		followers[i] = follow(ctx, id, token)
	}
	l := startLoad(t, prefix, loadClients)
	time.Sleep(2 * time.Second)
	c.inject(t, r)
	time.Sleep(time.Second)
	// The kitchen goes on after the fault: every follower must see exactly what happened.
	for _, f := range followers {
		for _, st := range []string{"ACCEPTED", "BAKING"} {
			moveEventually(t, f.id, st)
		}
	}
	time.Sleep(2 * time.Second) // the load runs on after the fault healed, and retries in flight settle
	rep := l.stop()
	r.acked, r.failed, r.outage = rep.Acked, rep.Failures, rep.LongestGap
	r.stored = checkStoredOnce(t, rep, prefix)
	for i, f := range followers {
		if err := f.wait(60 * time.Second); err != nil {
			t.Errorf("follower %d: %v", i, err)
		}
	}
	t.Logf("%s: acknowledged %d, stored %d, failed attempts %d (first: %v), outage window %s, fault lasted %s, first order %s after",
		c.name, r.acked, r.stored, r.failed, rep.FirstFailures, r.outage.Round(10*time.Millisecond),
		r.down.Round(10*time.Millisecond), r.recovery.Round(10*time.Millisecond))
	if r.acked == 0 {
		t.Fatal("no order acknowledged")
	}
	if maxF := c.maxFailed(r); r.failed > maxF {
		t.Errorf("%d failed attempts; the mechanism bounds them to %d", r.failed, maxF)
	}
	if maxO := c.maxOutage(r); r.outage > maxO {
		t.Errorf("no order acknowledged for %s; the mechanism bounds that to %s", r.outage, maxO)
	}
}

// moveEventually moves an order as staff do, retrying through the fault's tail; 409 is a retry of a change that
// went through.
func moveEventually(t *testing.T, id, status string) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		req, _ := http.NewRequest("POST", stack.GatewayURL+"/staff/api/orders/"+id+"/status", strings.NewReader(`{"status":"`+status+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+staff(t))
		resp, err := stack.HTTP.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict {
			return fmt.Errorf("move %s to %s: %d", id, status, resp.StatusCode)
		}
		return nil
	})
}

// follower is a customer following one order's stream across faults: when the stream ends it comes back with
// the last event's ID, as EventSource does.
type follower struct {
	id, token string
	mu        sync.Mutex
	seen      []event
	reconnect int
	done      chan error
}

var wantFollowed = []string{"CREATED", "ACCEPTED", "BAKING"}

func follow(ctx context.Context, id, token string) *follower {
	f := &follower{id: id, token: token, done: make(chan error, 1)}
	client := &http.Client{Transport: stack.HTTP.Transport.(*http.Transport).Clone()}
	go func() { f.done <- f.run(ctx, client) }()
	return f
}

func (f *follower) run(ctx context.Context, client *http.Client) error {
	var last int64
	for {
		err := f.readOnce(ctx, client, &last)
		f.mu.Lock()
		n := len(f.seen)
		f.mu.Unlock()
		if n >= len(wantFollowed) || ctx.Err() != nil {
			return err
		}
		f.mu.Lock()
		f.reconnect++
		f.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
}

// readOnce reads one connection of the stream until it ends, or until the three wanted events were seen.
func (f *follower) readOnce(ctx context.Context, client *http.Client, last *int64) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", trackURL(f.id, f.token), nil)
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(*last, 10))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("GET events: %d", resp.StatusCode)
	}
	err = readEvents(resp.Body, func(e event) error {
		*last = e.Resume
		f.mu.Lock()
		f.seen = append(f.seen, e)
		n := len(f.seen)
		f.mu.Unlock()
		if n >= len(wantFollowed) {
			return errFollowedAll
		}
		return nil
	})
	if errors.Is(err, errFollowedAll) {
		return nil
	}
	return err
}

// errFollowedAll ends a follower's read once it saw every event it waits for.
var errFollowedAll = errors.New("every followed event seen")

// wait waits for the three events and checks them: each once, in order, ids rising.
func (f *follower) wait(within time.Duration) error {
	select {
	case <-f.done:
	case <-time.After(within):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var got []string
	var prev int64
	for _, e := range f.seen {
		if e.OrderID != f.id || e.ID <= prev {
			return fmt.Errorf("event %+v after id %d: another order's, or not after the previous one", e, prev)
		}
		prev = e.ID
		got = append(got, e.Status)
	}
	if strings.Join(got, ",") != strings.Join(wantFollowed, ",") {
		return fmt.Errorf("saw %v over %d reconnections; want %v, each once", got, f.reconnect, wantFollowed)
	}
	return nil
}

// killAndAwaitRestart kills a supervised process with SIGKILL and waits until its supervisor started it again
// and healed says it serves; down is the time to that point.
func killAndAwaitRestart(name string, healed func(*testing.T) func() error) func(*testing.T, *faultResult) {
	return func(t *testing.T, r *faultResult) {
		before, err := stack.Restarts(name)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := stack.Pid(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		eventually(t, 90*time.Second, func() error {
			if n, _ := stack.Restarts(name); n <= before {
				return fmt.Errorf("%s not restarted by its supervisor", name)
			}
			return healed(t)()
		})
		r.down = time.Since(killed)
	}
}

func orderReplicaServes(t *testing.T, n int) func() error {
	return func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health/readyz", stack.Ports.Order+n-1))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("replica %d: readyz %d", n, resp.StatusCode)
		}
		return passingInConsul(t, fmt.Sprintf("order-%d", n))
	}
}

// passingInConsul: the instance and its sidecar pass their checks, so the mesh routes to it again.
func passingInConsul(t *testing.T, id string) error {
	entries, _, err := consul(t).Health().Service("order", "", false, nil)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Service.ID == id {
			if st := e.Checks.AggregatedStatus(); st != "passing" {
				return fmt.Errorf("%s is %s", id, st)
			}
			return nil
		}
	}
	return fmt.Errorf("%s not in the catalog", id)
}

func sidecarListening(t *testing.T, id string) func() error {
	return func() error {
		entries, _, err := consul(t).Health().Service("order-sidecar-proxy", "", true, nil)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Service.ID == id+"-sidecar-proxy" {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", e.Service.Port), time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			}
		}
		return fmt.Errorf("%s's sidecar not passing", id)
	}
}

func vaultUnsealed() error {
	resp, err := stack.HTTP.Get(stack.VaultAddr + "/v1/sys/health")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK { // 503: sealed
		return fmt.Errorf("vault health %d", resp.StatusCode)
	}
	return nil
}

// holdFile switches on the test-only hold hook (ORDER_TEST_HOLD_COMMIT_FILE) of the one order instance that
// has it: while the file exists, that instance's new orders wait between their INSERTs and COMMIT. It lives in
// the shared temporary folder, where the service's own user can see it.
var holdFile = filepath.Join(os.TempDir(), fmt.Sprintf("pz-hold-commit-%d", os.Getpid()))

// holdReplica is the order instance the INSERT/COMMIT case starts for itself, registered in the mesh like any
// replica, and the only instance of the suite with the hold hook: every other one runs production's write
// path (BEGIN, the INSERTs and COMMIT in one batch).
const holdReplica = stacktest.MaxOrderReplicas

// heldOrders are sent straight to the hold instance, as its sidecar would pass them on, so that transactions
// are held whatever instances the gateway's pooled connections lead to.
const heldOrders = loadClients

func killBetweenInsertAndCommit(t *testing.T, r *faultResult) {
	name := fmt.Sprintf("order-%d", holdReplica)
	startHoldReplica(t)
	t.Cleanup(func() { stopHoldReplica(t) })

	// Transactions with inserted rows, waiting for COMMIT, that began before a time (MariaDB's clock), as the
	// server sees them. A production write is one batch, open for a round trip; a held one stays open.
	openBefore := func(at string, args ...any) (n int) {
		if err := stack.Observer.QueryRow(`SELECT COUNT(*) FROM information_schema.INNODB_TRX
			WHERE trx_rows_modified > 0 AND trx_started <= `+at, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	dbNow := func() (now string) { // as text: compared in MariaDB's own time zone
		if err := stack.Observer.QueryRow(`SELECT CAST(NOW(6) AS CHAR)`).Scan(&now); err != nil {
			t.Fatal(err)
		}
		return now
	}
	before, err := stack.Restarts(name)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := stack.Pid(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(holdFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	held := time.Now()
	defer os.Remove(holdFile)

	direct, err := orderclient.New(fmt.Sprintf("http://127.0.0.1:%d", stack.Ports.Order+holdReplica-1), &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("held-%d", time.Now().UnixNano())
	answers := make(chan error, heldOrders)
	for i := range heldOrders {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := direct.CreateOrder(ctx, order.NewOrder{
				Customer:       order.Customer{Name: "Held " + prefix, Phone: testPhone, Address: testAddress},
				Items:          []order.ItemRequest{{Pizza: "margherita", Size: "M", Quantity: 1}},
				IdempotencyKey: fmt.Sprintf("%s-%d", prefix, i),
			})
			answers <- err
		}()
	}
	// The hook holds a transaction at most the store's MaxTransaction (5 s): the held ones are those open for a
	// second already, and the kill comes well within the bound.
	var heldTx int
	eventually(t, 3*time.Second, func() error {
		if heldTx = openBefore(`NOW(6) - INTERVAL 1 SECOND`); heldTx < heldOrders {
			return fmt.Errorf("%d transactions held between INSERT and COMMIT; want at least the %d sent to %s", heldTx, heldOrders, name)
		}
		return nil
	})
	killedAt := dbNow()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, pid)
	// MariaDB sees the dead connections close and rolls their transactions back.
	eventually(t, 10*time.Second, func() error {
		if n := openBefore(`?`, killedAt); n > 0 {
			return fmt.Errorf("%d of %d held transactions still open after the kill", n, heldTx)
		}
		return nil
	})
	os.Remove(holdFile)
	r.down = time.Since(held)
	for range heldOrders {
		if err := <-answers; err == nil {
			t.Error("an order sent to the hold instance was acknowledged: it was not held, the case proves nothing")
		}
	}
	// Rolled back, each key is free: the customer's retry through the gateway stores the order, once.
	for i := range heldOrders {
		key := fmt.Sprintf("%s-%d", prefix, i)
		var p placed
		eventually(t, 30*time.Second, func() (err error) {
			var status int
			if status, p, err = placeOrder(t, key, orderBody("Held "+prefix)); status != http.StatusCreated {
				return fmt.Errorf("retry of held order %s: %d %v", key, status, err)
			}
			return nil
		})
		var n int
		var stored string
		if err := stack.Observer.QueryRow(`SELECT COUNT(*), COALESCE(MAX(o.id), '') FROM idempotency_keys k
			JOIN orders o ON o.id = k.order_id WHERE k.idempotency_key = ?`, key).Scan(&n, &stored); err != nil {
			t.Fatal(err)
		}
		if n != 1 || stored != p.ID {
			t.Errorf("held order %s: %d stored (%q); want exactly the retry's %s", key, n, stored, p.ID)
		}
	}
	var all int
	if err := stack.Observer.QueryRow(`SELECT COUNT(*) FROM orders WHERE customer_name = ?`, "Held "+prefix).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if all != heldOrders {
		t.Errorf("%d orders stored for the %d held ones; want each once", all, heldOrders)
	}
	eventually(t, 90*time.Second, func() error {
		if n, _ := stack.Restarts(name); n <= before {
			return fmt.Errorf("%s not restarted by its supervisor", name)
		}
		return orderReplicaServes(t, holdReplica)()
	})
	r.recovery = time.Since(held) - r.down
	t.Logf("%d transactions were held open before COMMIT when %s was killed", heldTx, name)
	stopHoldReplica(t)
}

// startHoldReplica starts the hold instance and its sidecar (stack.sh start with one more replica) and waits
// until both pass in Consul, as `make run` waits for every replica.
func startHoldReplica(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(stack.Root, "scripts", "stack.sh"), "start")
	cmd.Dir = stack.Root
	cmd.Env = append(stack.Env(), fmt.Sprintf("ORDER_REPLICAS=%d", holdReplica),
		fmt.Sprintf("ORDER_TEST_HOLD_COMMIT_FILE_%d=%s", holdReplica, holdFile))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stack.sh start with the hold instance: %v\n%s", err, out)
	}
	eventually(t, 60*time.Second, orderReplicaServes(t, holdReplica))
}

// stopHoldReplica stops the hold instance (it deregisters itself and its sidecar) and then its sidecar, and
// waits until Consul no longer lists it, so the tests after this one see the stack's own replicas only.
func stopHoldReplica(t *testing.T) {
	t.Helper()
	id := fmt.Sprintf("order-%d", holdReplica)
	stackCommand(t, "stop-process", id)
	stackCommand(t, "stop-process", "sidecar-"+id)
	eventually(t, 30*time.Second, func() error {
		for _, svc := range []string{"order", "order-sidecar-proxy"} {
			entries, _, err := consul(t).Health().Service(svc, "", false, nil)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Service.ID, id) {
					return fmt.Errorf("%s still registered", e.Service.ID)
				}
			}
		}
		return nil
	})
}

func restartMariaDB(t *testing.T, r *faultResult) {
	pid, err := stack.Pid("mariadb")
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	out := stackCommand(t, "stop-process", "mariadb")
	if strings.Contains(out, "KILL") {
		t.Errorf("mariadbd did not finish a clean shutdown:\n%s", out)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("mariadbd (pid %d) still running after stop-process", pid)
	}
	if _, err := stack.Pid("mariadb"); err == nil {
		t.Error("mariadb.child still there after stop-process: a supervisor still runs")
	}
	dbUnavailable(t)
	time.Sleep(time.Second)
	stackCommand(t, "start-mariadb")
	r.down = time.Since(stopped)
	orderAfterDBOutage(t)
	r.recovery = time.Since(stopped) - r.down
}

// crashMariaDB kills mariadbd with SIGKILL and waits until its supervisor started it again and it answers.
func crashMariaDB(t *testing.T, r *faultResult) {
	before, err := stack.Restarts("mariadb")
	if err != nil {
		t.Fatal(err)
	}
	pid, err := stack.Pid("mariadb")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 90*time.Second, func() error {
		if n, _ := stack.Restarts("mariadb"); n <= before {
			return errors.New("mariadb not restarted by its supervisor")
		}
		if now, err := stack.Pid("mariadb"); err != nil || now == pid {
			return fmt.Errorf("no new mariadbd yet (pid %d, %v)", now, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return stack.Observer.PingContext(ctx)
	})
	r.down = time.Since(killed)
	orderAfterDBOutage(t)
	r.recovery = time.Since(killed) - r.down
}

// dbUnavailable: with the database away, an order is refused with 503 and Retry-After, not a hang or a 500.
func dbUnavailable(t *testing.T) {
	req, _ := http.NewRequest("POST", stack.GatewayURL+"/pizza", strings.NewReader(string(orderBody("During DB outage"))))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("db-outage-%d", time.Now().UnixNano()))
	asked := time.Now()
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		t.Fatalf("POST /pizza with the database down: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /pizza with the database down: %d, Retry-After %q, %s; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Order's dial timeout (3 s) plus the gateway's retries bound the answer: never a hang.
	if took := time.Since(asked); took > slack*5*time.Second {
		t.Errorf("the 503 took %s", took)
	}
}

func orderAfterDBOutage(t *testing.T) {
	eventually(t, 60*time.Second, func() error {
		if status, _, err := placeOrder(t, "", orderBody("After DB outage")); status != http.StatusCreated {
			return fmt.Errorf("POST /pizza after the database came back: %d %v", status, err)
		}
		return nil
	})
}

const (
	proxyDelay  = 100 * time.Millisecond
	resetBursts = 2
)

func proxiedDatabase(t *testing.T, r *faultResult) {
	p := startFaultProxy(t, fmt.Sprintf("127.0.0.1:%d", stack.Ports.MySQL))
	defer p.close()
	restartReplica2 := func(extra ...string) {
		pid, err := stack.SupervisorPid("order-2")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitExited(t, pid)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(stack.Root, "scripts", "stack.sh"), "start")
		cmd.Dir, cmd.Env = stack.Root, append(stack.Env(), extra...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("stack.sh start: %v\n%s", err, out)
		}
		eventually(t, 60*time.Second, orderReplicaServes(t, 2))
	}
	restartReplica2("ORDER_DB_ADDR_2=" + p.addr)
	defer restartReplica2() // back on MySQL directly, for the tests after this one
	start := time.Now()
	p.setDelay(proxyDelay)
	time.Sleep(3 * time.Second)
	p.setDelay(0)
	for range resetBursts {
		// Replica 2 talks to MySQL only through the proxy; after a burst its pools connect again on their next
		// query (an order, or the event relay's sweep every second), so a burst waits for a connection to reset.
		eventually(t, 10*time.Second, func() error {
			if p.open() == 0 {
				return errors.New("no connection through the proxy: replica 2 is not on it")
			}
			return nil
		})
		p.resetAll()
		time.Sleep(2 * time.Second)
	}
	r.down = time.Since(start)
}

// faultProxy is a TCP proxy that can delay what it forwards and reset every connection (RST, not FIN).
type faultProxy struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	delay time.Duration
	conns map[net.Conn]bool
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, target)
		}
	}()
	return p
}

func (p *faultProxy) serve(c net.Conn, target string) {
	up, err := net.DialTimeout("tcp", target, 3*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				d := p.delay
				p.mu.Unlock()
				time.Sleep(d)
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}
	go pipe(up, c)
	pipe(c, up)
}

func (p *faultProxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// resetAll aborts every proxied connection with a RST on both sides, as a crashed middlebox would.
// open is how many connections go through the proxy now (each side counted once).
func (p *faultProxy) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *faultProxy) resetAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
	return n
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.resetAll()
}
