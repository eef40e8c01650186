package mysqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/internal/mysqltest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/mysqlstore"
)

type replicaFixture struct {
	fixture
	replica *mysqltest.Replica
	split   *mysqlstore.Replica
	reads   *countByLabels
	lag     *lastValue
}

// countByLabels is a metrics.Counter that keeps a total per label set, for the tests to report.
type countByLabels struct {
	labels []string
	totals *sync.Map // strings.Join(labels) → *atomic.Int64
}

func (c countByLabels) With(lv ...string) metrics.Counter {
	return countByLabels{labels: append(slices.Clone(c.labels), lv...), totals: c.totals}
}

func (c countByLabels) Add(delta float64) {
	v, _ := c.totals.LoadOrStore(strings.Join(c.labels, " "), new(atomic.Int64))
	v.(*atomic.Int64).Add(int64(delta))
}

// snapshot returns the totals so far, by label set ("pool replica reason caught_up", …).
func (c countByLabels) snapshot() map[string]int64 {
	m := map[string]int64{}
	c.totals.Range(func(k, v any) bool {
		m[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return m
}

// readsSince sums the reads counted since before, by pool.
func (c countByLabels) readsSince(before map[string]int64) (replica, primary int64, byLabels map[string]int64) {
	byLabels = map[string]int64{}
	for k, v := range c.snapshot() {
		n := v - before[k]
		if n == 0 {
			continue
		}
		byLabels[k] = n
		if strings.HasPrefix(k, "pool replica ") {
			replica += n
		} else {
			primary += n
		}
	}
	return replica, primary, byLabels
}

func (c countByLabels) String() string {
	var parts []string
	c.totals.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// lastValue is a metrics.Gauge that remembers its last value and its largest.
type lastValue struct {
	mu        sync.Mutex
	last, max float64
}

func (g *lastValue) With(...string) metrics.Gauge { return g }
func (g *lastValue) Set(v float64) {
	g.mu.Lock()
	g.last, g.max = v, max(g.max, v)
	g.mu.Unlock()
}
func (g *lastValue) Add(d float64) { g.Set(g.last + d) }
func (g *lastValue) values() (last, maxSeen float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last, g.max
}

// newReplicaFixture is newFixture with the store's reads on the shared test replica, as the order service
// runs with a replica: the same runtime user on both (it is replicated), the monitor running.
func newReplicaFixture(t *testing.T) replicaFixture {
	t.Helper()
	r := mysqltest.NewReplica(t)
	f := newFixture(t)
	r.CatchUp(t)
	replicaDB := openAt(t, r.Addr, f.db.Name, f.user, f.pass)
	reads, lag := countByLabels{totals: new(sync.Map)}, &lastValue{}
	split := mysqlstore.NewReplica(replicaDB, mysqlstore.ReplicaConfig{
		MaxLag: 200 * time.Millisecond, CheckInterval: 200 * time.Millisecond, Timeout: time.Second,
	}, mysqlstore.ReplicaMetrics{Reads: reads, Lag: lag}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	primary := open(t, f.db, f.user, f.pass)
	f.store = mysqlstore.New(primary, mysqlstore.WithReplica(split))
	f.svc = order.NewService(f.store, order.DefaultMenu)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.store.MonitorReplica(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitUntil(t, 10*time.Second, "replica in use", split.Usable)
	return replicaFixture{fixture: f, replica: r, split: split, reads: &reads, lag: lag}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.EventuallyEvery(t, d, 20*time.Millisecond, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

// Orders written to the primary are read from the replica: its SELECT counter moves with the reads.
func TestReadsGoToTheReplica(t *testing.T) {
	f := newReplicaFixture(t)
	ctx := context.Background()
	var ids []string
	for range 20 {
		c, err := f.svc.CreateOrder(ctx, newOrder(""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Order.ID)
	}
	before := f.replica.ComSelect(t)
	const reads = 100
	for i := range reads {
		if _, err := f.svc.GetOrder(ctx, ids[i%len(ids)]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.ListOrders(ctx, order.ListFilter{}); err != nil {
		t.Fatal(err)
	}
	// Each read is a position wait, the order and its items: three SELECTs on the replica. The monitor adds a
	// few per second, far fewer than the reads.
	if n := f.replica.ComSelect(t) - before; n < 3*reads {
		t.Errorf("replica ran %d SELECTs for %d reads; want at least %d", n, reads, 3*reads)
	}
	last, _ := f.lag.values()
	t.Logf("reads by pool and reason: %s; replica lag %.2f ms", f.reads, last*1000)
}

// A customer who just ordered never gets a 404, and a staff member who just moved an order sees its new
// status: first while the replica applies every change 1 to 2 s late (MASTER_DELAY), then while its SQL
// thread stops and starts again every 300 ms, so reads meet it both behind and caught up.
//
// Where each read went is counted by the replica's metric, one count per read: a sequence reads three times
// (GetOrder, ChangeStatus's read of the changed order, GetOrder again).
//   - With the delay, no read can be served by the replica: each waits for a position that includes the
//     worker's own write of a moment before, which the replica applies 1 s or more later, and a read waits
//     at most MaxLag (200 ms) before it goes to the primary; the monitor's heartbeat waits as long, so it never
//     puts the replica back either.
//   - While the SQL thread toggles, reads in its running half are served by the replica once the monitor put
//     it back (every 200 ms), and reads in its stopped half go to the primary: both must happen.
func TestReadYourWritesWithADelayedReplica(t *testing.T) {
	f := newReplicaFixture(t)
	const sequences, readsPerSequence = 500, 3
	f.replica.SetDelay(t, 2*time.Second) // MASTER_DELAY counts whole seconds of event timestamps: 1 to 2 s
	before := f.reads.snapshot()
	readYourWrites(t, f, sequences)
	onReplica, onPrimary, byLabels := f.reads.readsSince(before)
	t.Logf("delayed replica: reads by pool and reason %v", byLabels)
	if total := onReplica + onPrimary; total != sequences*readsPerSequence {
		t.Errorf("delayed replica: %d reads counted; want %d (%d sequences of %d)", total, sequences*readsPerSequence, sequences, readsPerSequence)
	}
	if onReplica != 0 {
		t.Errorf("delayed replica: %d reads served by a replica 1 s or more behind; the %s wait allows none", onReplica, 200*time.Millisecond)
	}

	f.replica.SetDelay(t, 0)
	waitUntil(t, 10*time.Second, "replica back in use", f.split.Usable)
	selectsBefore := f.replica.ComSelect(t)
	before = f.reads.snapshot()
	stop := make(chan struct{})
	toggled := make(chan struct{})
	go func() {
		defer close(toggled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			f.replica.Exec(t, "STOP SLAVE SQL_THREAD")
			time.Sleep(300 * time.Millisecond)
			f.replica.Exec(t, "START SLAVE SQL_THREAD")
		}
	}()
	readYourWrites(t, f, sequences)
	close(stop)
	<-toggled
	onReplica, onPrimary, byLabels = f.reads.readsSince(before)
	selects := f.replica.ComSelect(t) - selectsBefore
	_, maxLag := f.lag.values()
	t.Logf("toggled replica: reads by pool and reason %v; replica SELECTs %d; largest lag measured %.0f ms", byLabels, selects, maxLag*1000)
	if total := onReplica + onPrimary; total != sequences*readsPerSequence {
		t.Errorf("toggled replica: %d reads counted; want %d", total, sequences*readsPerSequence)
	}
	if onReplica == 0 || onPrimary == 0 {
		t.Errorf("toggled replica: %d reads on the replica, %d on the primary; want both: reads meet it caught up and behind", onReplica, onPrimary)
	}
	// A read served by the replica is three SELECTs there (position wait, order, items): the server's own
	// count confirms the metric.
	if selects < 3*onReplica {
		t.Errorf("toggled replica: the replica ran %d SELECTs; %d reads served there take at least %d", selects, onReplica, 3*onReplica)
	}
}

// readYourWrites runs sequences of POST, GET, status change, GET on 4 workers and fails on any 404 or stale
// status.
func readYourWrites(t *testing.T, f replicaFixture, sequences int64) {
	t.Helper()
	ctx := context.Background()
	const workers = 4
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		next     atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= sequences {
				c, err := f.svc.CreateOrder(ctx, newOrder(""))
				if err != nil {
					t.Error(err)
					failures.Add(1)
					return
				}
				if got, err := f.svc.GetOrder(ctx, c.Order.ID); err != nil || got.Status != order.StatusCreated {
					failures.Add(1)
					t.Errorf("GET right after POST: %v, %v", got.Status, err)
					continue
				}
				if _, err := f.svc.ChangeStatus(ctx, c.Order.ID, order.StatusAccepted); err != nil {
					failures.Add(1)
					t.Errorf("change status: %v", err)
					continue
				}
				if got, err := f.svc.GetOrder(ctx, c.Order.ID); err != nil || got.Status != order.StatusAccepted {
					failures.Add(1)
					t.Errorf("GET right after a status change: %v, %v; want ACCEPTED", got.Status, err)
				}
				if failures.Load() > 10 {
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d sequences read a missing or stale order", n, sequences)
	}
}

// The replica stopped under load: reads carry on from the primary with no failed request, and go back to the
// replica when it returns.
func TestReplicaStoppedUnderLoad(t *testing.T) {
	f := newReplicaFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg               sync.WaitGroup
		reads, failures  atomic.Int64
		firstErr         atomic.Value
		stopped, resumed = make(chan struct{}), make(chan struct{})
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := f.svc.CreateOrder(ctx, newOrder(""))
				if err == nil {
					_, err = f.svc.GetOrder(ctx, c.Order.ID)
				}
				if err == nil {
					_, err = f.svc.ListOrders(ctx, order.ListFilter{Limit: 5})
				}
				if err != nil && ctx.Err() == nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				reads.Add(2)
			}
		}()
	}
	go func() {
		time.Sleep(time.Second)
		f.replica.Stop(t)
		close(stopped)
		time.Sleep(3 * time.Second)
		f.replica.Start(t)
		close(resumed)
	}()
	<-stopped
	waitUntil(t, 5*time.Second, "reads off the stopped replica", func() bool { return !f.split.Usable() })
	<-resumed
	waitUntil(t, 15*time.Second, "replica back in use", f.split.Usable)
	before := f.replica.ComSelect(t)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d failed requests of %d reads while the replica was stopped; first: %v", n, reads.Load(), firstErr.Load())
	}
	if n := f.replica.ComSelect(t) - before; n < 100 {
		t.Errorf("replica ran %d SELECTs in the second after it came back; want reads back on it", n)
	}
	t.Logf("%d reads, 0 failed; reads by pool and reason: %s", reads.Load(), f.reads)
}

// Vault issues users on the primary only. CREATE USER and DROP USER replicate, so the leased user logs in to
// the replica too, and its revocation ends it on both.
func TestLeasedUserReplicates(t *testing.T) {
	r := mysqltest.NewReplica(t)
	db := mysqltest.NewDatabase(t)
	root := db.Open(t)
	creation, err := os.ReadFile("../../vault/database/order-creation.sql")
	if err != nil {
		t.Fatal(err)
	}
	revocation, err := os.ReadFile("../../vault/database/revocation.sql")
	if err != nil {
		t.Fatal(err)
	}
	user, pass := "v-order-"+strings.ToLower(t.Name()[:12]), "Pw-0123456789abcdef"
	render := func(tmpl []byte) []string {
		s := strings.NewReplacer("{{name}}", user, "{{password}}", pass, "pizza.*", "`"+db.Name+"`.*").Replace(string(tmpl))
		var stmts []string
		for _, st := range strings.Split(s, ";") {
			if st = strings.TrimSpace(st); st != "" {
				stmts = append(stmts, st)
			}
		}
		return stmts
	}
	for _, st := range render(creation) {
		if _, err := root.Exec(st); err != nil {
			t.Fatalf("%s: %v", strings.SplitN(st, "IDENTIFIED", 2)[0], err)
		}
	}
	t.Cleanup(func() { _, _ = root.Exec("DROP USER IF EXISTS '" + user + "'@'%'") })
	r.CatchUp(t)
	for name, dsn := range map[string]string{"primary": db.DSNFor(user, pass), "replica": r.DSNFor(db, user, pass)} {
		if err := openDSN(t, dsn).Ping(); err != nil {
			t.Errorf("leased user on the %s: %v", name, err)
		}
	}
	for _, st := range render(revocation) {
		if _, err := root.Exec(st); err != nil {
			t.Fatal(err)
		}
	}
	r.CatchUp(t)
	for name, dsn := range map[string]string{"primary": db.DSNFor(user, pass), "replica": r.DSNFor(db, user, pass)} {
		if err := openDSN(t, dsn).Ping(); err == nil {
			t.Errorf("revoked user still logs in to the %s", name)
		}
	}
}

// openDSN opens a pool on dsn, closed when the test ends.
func openDSN(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	pool, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}
