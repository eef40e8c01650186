package e2e

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pizzajoint/mesh/internal/stacktest"
)

// The database primary is lost for good under the closed-loop load (kill -9 of mariadbd and of its supervisor,
// so nothing brings it back); the operator promotes the replica with `stack.sh promote-db-replica` (what `make
// promote-db-replica` runs); orders flow again on the new primary, with no order instance restarted:
//   - every order acknowledged after the promotion began is stored on the new primary, each key once;
//   - a customer's GET right after their POST finds the order (read-your-writes, now on the one server);
//   - Vault issues and revokes credentials on the new primary (a db-creds rotation, then orders again);
//   - orders acknowledged before the kill that the new primary lacks are counted and logged, not asserted:
//     with asynchronous replication the primary acknowledges a commit before the replica has it, so the
//     orders in that window are lost with the primary. Semi-synchronous replication (DB_SEMI_SYNC=1) closes
//     that window, and there the count must be zero.
//
// The test runs on stacks of its own, one per replication mode, each in a child process of this test binary
// (promotionModeEnv): a lost primary is for good, so the package's stack must not be the one, and a child's
// package stack is its own from its TestMain on, so no test ever swaps the stack under another's goroutines.
// The measured numbers are in the README's "Losing the database primary".
func TestPrimaryLostReplicaPromoted(t *testing.T) {
	if mode := os.Getenv(promotionModeEnv); mode != "" {
		r := loseThePrimaryAndPromote(t, stack, mode == "semi-sync")
		t.Logf("%s replication: %d orders acknowledged before the promotion, %d of them not on the new primary (lost); "+
			"%d acknowledged after it, all stored; %d failed attempts; no order for %s (kill → first order on the new primary), "+
			"promotion took %s", mode, r.ackedBefore, r.lost, r.ackedAfter, r.failed, r.outage.Round(10*time.Millisecond),
			r.promotion.Round(10*time.Millisecond))
		if mode == "semi-sync" && r.lost != 0 {
			t.Errorf("semi-synchronous replication lost %d acknowledged orders; want none", r.lost)
		}
		return
	}
	for _, mode := range []string{"async", "semi-sync"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestPrimaryLostReplicaPromoted$", "-test.v", "-test.count=1",
				"-test.timeout=25m")
			cmd.Env = append(os.Environ(), promotionModeEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			t.Logf("the test on a stack of its own (%s replication):\n%s", mode, out)
			if err != nil {
				t.Fatalf("%s replication: %v", mode, err)
			}
		})
	}
}

// promotionModeEnv names the replication mode in the environment of TestPrimaryLostReplicaPromoted's child
// process; TestMain starts that process's stack for it (promotionStackEnv).
const promotionModeEnv = "E2E_PROMOTION_MODE"

// promotionStackEnv is the stack's settings for a promotion child process: semi-synchronous replication or not.
func promotionStackEnv(mode string) (map[string]string, error) {
	switch mode {
	case "async":
		return map[string]string{"DB_SEMI_SYNC": "0"}, nil
	case "semi-sync":
		return map[string]string{"DB_SEMI_SYNC": "1"}, nil
	}
	return nil, fmt.Errorf("%s=%q: want async or semi-sync", promotionModeEnv, mode)
}

type promotionResult struct {
	ackedBefore, lost, ackedAfter, failed int
	outage, promotion                     time.Duration
}

func loseThePrimaryAndPromote(t *testing.T, st *stacktest.Stack, semiSync bool) promotionResult {
	prefix := fmt.Sprintf("promote-%d", time.Now().UnixNano())
	l := startLoad(t, prefix, loadClients)
	// On a failure too, the load ends before the test does; stopping twice is harmless.
	t.Cleanup(func() { l.stop() })
	time.Sleep(3 * time.Second)
	// The primary's own account of semi-synchronous replication: a zero loss proves nothing if it had fallen
	// back to asynchronous (its timeout) before the kill.
	out, err := st.RootSQL("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")
	if err != nil {
		t.Fatalf("semi-sync status: %v\n%s", err, out)
	}
	semi := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			semi[strings.TrimPrefix(k, "Rpl_semi_sync_master_")] = v
		}
	}
	t.Logf("before the kill, semi-sync on the primary: status %s, commits acknowledged by the replica %s, without it %s",
		semi["status"], semi["yes_tx"], semi["no_tx"])
	if want := map[bool]string{true: "ON", false: "OFF"}[semiSync]; semi["status"] != want {
		t.Fatalf("semi-synchronous replication on the primary is %q; want %s", semi["status"], want)
	}

	// Lost for good: the supervisor first, so it cannot start mariadbd again, then the server mid-write.
	for _, pidOf := range []func(string) (int, error){st.SupervisorPid, st.Pid} {
		pid, err := pidOf("mariadb")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	time.Sleep(time.Second)
	dbUnavailable(t)

	begun := time.Now()
	out = stackCommand(t, "promote-db-replica")
	var r promotionResult
	r.promotion = time.Since(begun)
	t.Logf("promote-db-replica (%s):\n%s", r.promotion.Round(10*time.Millisecond), out)
	orderAfterDBOutage(t)

	// Vault's database connection is on the new primary: revoking every lease drops their users there, and
	// order's next connections log in as users Vault creates there.
	if _, err := st.Meshctl("rotate", "db-creds"); err != nil {
		t.Fatalf("rotate db-creds on the new primary: %v", err)
	}
	orderAfterDBOutage(t)
	postThenGet(t, "ryw-"+prefix, 40) // not under the load's key prefix
	time.Sleep(3 * time.Second)
	rep := l.stop()

	obs := newPrimaryObserver(t, st)
	stored := map[string]bool{}
	for start := 0; start < len(rep.IDs); start += 500 {
		batch := rep.IDs[start:min(start+500, len(rep.IDs))]
		rows, err := obs.Query(`SELECT id FROM orders WHERE id IN (?`+strings.Repeat(", ?", len(batch)-1)+`)`, anySlice(batch)...)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			stored[id] = true
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	firstAfter := time.Time{}
	for i, id := range rep.IDs {
		switch {
		case rep.AckedAt[i].Before(begun):
			r.ackedBefore++
			if !stored[id] {
				r.lost++
			}
		default:
			r.ackedAfter++
			if firstAfter.IsZero() {
				firstAfter = rep.AckedAt[i]
			}
			if !stored[id] {
				t.Errorf("order %s (key %s) was acknowledged at %s, after the promotion began, and is not on the new primary",
					id, rep.Keys[i], rep.AckedAt[i].Format("15:04:05.000"))
			}
		}
	}
	if r.ackedAfter == 0 {
		t.Fatal("no order was acknowledged after the promotion")
	}
	r.outage, r.failed = firstAfter.Sub(killed), rep.Failures
	// Each key at most once: a retry of an order whose answer the kill swallowed found it (if the replica had
	// it) or stored it anew, never both.
	var rowsUnderKeys, keys int
	if err := obs.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM idempotency_keys WHERE idempotency_key LIKE ?`,
		prefix+"-%").Scan(&rowsUnderKeys, &keys); err != nil {
		t.Fatal(err)
	}
	var orders int
	if err := obs.QueryRow(`SELECT COUNT(*) FROM orders WHERE customer_name = ?`, "Load "+prefix).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if rowsUnderKeys != keys || orders != keys {
		t.Errorf("%d orders of the load, %d key rows, %d distinct keys; want one order per key", orders, rowsUnderKeys, keys)
	}
	return r
}

// newPrimaryObserver is a read-only pool on the promoted replica (the stack's observer is on the lost
// primary), through a user root makes over the replica's socket (replicaSQL: the stack variable is st).
func newPrimaryObserver(t *testing.T, st *stacktest.Stack) *sql.DB {
	t.Helper()
	pass := strconv.FormatInt(time.Now().UnixNano(), 36)
	sqlText := fmt.Sprintf("CREATE OR REPLACE USER 'promotion_observer'@'127.0.0.1' IDENTIFIED BY '%s';\n"+
		"GRANT SELECT ON pizza.* TO 'promotion_observer'@'127.0.0.1';\n", pass)
	replicaSQL(t, sqlText)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net = "promotion_observer", pass, "tcp"
	cfg.Addr = fmt.Sprintf("127.0.0.1:%d", st.Ports.MySQLReplica)
	cfg.DBName = "pizza"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	return db
}

func anySlice(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}
