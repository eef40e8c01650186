package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// replicaSQL runs SQL as root on the stack's database replica (scripts/mariadb.sh sql, SQL on stdin).
func replicaSQL(t *testing.T, sqlText string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(stack.Root, "scripts", "mariadb.sh"), "sql", filepath.Join(stack.Dir, "mariadb-replica"), "-N")
	cmd.Env = stack.Env()
	cmd.Stdin = strings.NewReader(sqlText)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb.sh sql: %v\n%s", err, out)
	}
	return string(out)
}

// stackCommand runs scripts/stack.sh with the stack's settings (e.g. stop-process mariadb, start-mariadb) and
// returns its output.
func stackCommand(t *testing.T, args ...string) string {
	t.Helper()
	out, err := stack.Script(5*time.Minute, "stack.sh", args...)
	if err != nil {
		t.Fatalf("stack.sh %v: %v\n%s", args, err, out)
	}
	return out
}

func replicaSelects(t *testing.T) int64 {
	out := strings.Fields(replicaSQL(t, "SHOW GLOBAL STATUS LIKE 'Com_select'"))
	n, err := strconv.ParseInt(out[len(out)-1], 10, 64)
	if err != nil {
		t.Fatalf("Com_select: %q", out)
	}
	return n
}

// trackOrder GETs the order as its customer does.
func trackOrder(p placed) (int, string, error) {
	req, _ := http.NewRequest("GET", stack.GatewayURL+"/pizza/"+p.ID, nil)
	req.Header.Set("X-Tracking-Token", p.TrackingToken)
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var got placed
	if resp.StatusCode == http.StatusOK {
		err = decodeJSON(resp, &got)
	}
	return resp.StatusCode, got.Status, err
}

// Through the whole mesh: customers' GETs are served by the database replica, and one right after the POST
// never misses the order, also while the replica's SQL thread is stopped (it falls further behind every
// moment).
//
// Every read is counted where it was served, by the order replicas' own metric (one count per store read; a
// customer's GET is one read): all 200 must have been served by the replica. The replica's server confirms
// it: a read there is three SELECTs (position wait, the order, its items).
func TestCustomerReadsFromTheReplica(t *testing.T) {
	const reads = 200
	before, selectsBefore := readsCounted(t), replicaSelects(t)
	postThenGet(t, "replica-read", reads)
	after, selects := readsCounted(t), replicaSelects(t)-selectsBefore
	onReplica, all := after.replica-before.replica, after.all-before.all
	t.Logf("%d customer reads: %d counted, %d served by the replica; the replica ran %d SELECTs", reads, all, onReplica, selects)
	if all != reads {
		t.Errorf("the order replicas counted %d reads for %d customer GETs; want one each", all, reads)
	}
	if onReplica != reads {
		t.Errorf("%d of %d customer reads were served by the database replica; want every one", onReplica, reads)
	}
	if selects < 3*reads {
		t.Errorf("the replica ran %d SELECTs; %d reads served there take at least %d", selects, reads, 3*reads)
	}
	replicaSQL(t, "STOP SLAVE SQL_THREAD")
	defer replicaSQL(t, "START SLAVE SQL_THREAD")
	postThenGet(t, "replica-stopped", reads)
	for i, port := range orderPorts() {
		t.Logf("order-%d: %s", i+1, strings.Join(replicaMetrics(t, port), "; "))
	}
}

// orderPorts are the loopback ports of the stack's order replicas.
func orderPorts() []int {
	n, _ := strconv.Atoi(stackOptions.Env["ORDER_REPLICAS"])
	ports := make([]int, max(n, 1))
	for i := range ports {
		ports[i] = stack.Ports.Order + i
	}
	return ports
}

type readCount struct{ replica, all int64 }

// readsCounted sums pizza_order_db_reads_total over the order replicas: all reads, and those the replica
// served (pool="replica").
func readsCounted(t *testing.T) readCount {
	t.Helper()
	var c readCount
	for _, port := range orderPorts() {
		replica, all, err := testkit.DBReads(strings.Join(replicaMetrics(t, port), "\n"))
		if err != nil {
			t.Fatalf("order on :%d: %v", port, err)
		}
		c.replica += replica
		c.all += all
	}
	return c
}

// replicaMetrics are an order instance's replica metrics (its /metrics on loopback).
func replicaMetrics(t *testing.T, port int) []string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "pizza_order_db_") {
			lines = append(lines, l)
		}
	}
	return lines
}

func postThenGet(t *testing.T, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				status, p, err := placeOrder(t, fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), i), orderBody("RYW"))
				if err != nil || status != http.StatusCreated {
					failures.Add(1)
					t.Errorf("POST: %d %v", status, err)
					continue
				}
				if code, st, err := trackOrder(p); code != http.StatusOK || st != "CREATED" || err != nil {
					failures.Add(1)
					t.Errorf("GET right after POST: %d %q %v", code, st, err)
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d POST-then-GET sequences failed", failures.Load(), n)
	}
}

// The database replica goes away under load: orders and reads carry on from the primary with no failed
// request, and reads go back to the replica when it returns.
func TestDatabaseReplicaStopUnderLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg             sync.WaitGroup
		done, failures atomic.Int64
		firstErr       atomic.Value
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				status, p, err := placeOrder(t, fmt.Sprintf("replica-stop-%d-%d-%d", time.Now().UnixNano(), w, i), orderBody("ReplicaStop"))
				if err == nil && status == http.StatusCreated {
					var code int
					code, _, err = trackOrder(p)
					if err == nil && code != http.StatusOK {
						err = fmt.Errorf("GET: %d", code)
					}
				}
				if err != nil && ctx.Err() == nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				done.Add(1)
			}
		})
	}
	time.Sleep(2 * time.Second)
	// A clean shutdown of the replica (its supervisor exits with it), then `start-mariadb` starts what is not
	// running: the replica, which replicates again.
	stackCommand(t, "stop-process", "mariadb-replica")
	time.Sleep(4 * time.Second)
	stackCommand(t, "start-mariadb")
	time.Sleep(3 * time.Second) // the order service's monitor checks the replica every second
	before := replicaSelects(t)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d failed requests of %d while the replica was away; first: %v", n, done.Load(), firstErr.Load())
	}
	if n := replicaSelects(t) - before; n < 50 {
		t.Errorf("replica ran %d SELECTs in the 2 s after it came back; want the reads back on it", n)
	}
	t.Logf("%d POST+GET sequences, 0 failed", done.Load())
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
