package mysqltest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// Replica is a second private mariadbd that follows the shared server with GTID replication, read_only, as the
// local stack's replica does. It is started on first use and shared by the test binary, so tests that use it
// (and change its replication) must not run in parallel with each other; each test's cleanup puts it back:
// running, replicating, no delay, caught up.
type Replica struct {
	Addr string // 127.0.0.1:port

	primary *server
	dir     string
	port    int
	admin   *sql.DB // root on the replica (the primary's root password, replicated)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited <-chan error
}

var (
	replicaOnce   sync.Once
	sharedReplica *Replica
	replicaErr    error
)

// NewReplica returns the shared replica, starting it on first use and waiting until it has applied everything
// the primary has written. Databases made by NewDatabase (before or after) are replicated to it.
func NewReplica(tb testing.TB) *Replica {
	tb.Helper()
	if !running.Load() {
		tb.Fatalf("mysqltest: the package's TestMain must call mysqltest.Run(m)")
	}
	srv, err := sharedServer()
	if err != nil {
		tb.Fatalf("mysqltest: %v", err)
	}
	if srv.dir == "" {
		tb.Fatalf("mysqltest: a replica needs the private server; unset %s", EnvDSN)
	}
	replicaOnce.Do(func() { sharedReplica, replicaErr = startReplica(srv) })
	if replicaErr != nil {
		tb.Fatalf("mysqltest: replica: %v", replicaErr)
	}
	r := sharedReplica
	tb.Cleanup(func() { r.restore(tb) })
	r.CatchUp(tb)
	return r
}

// stopReplica ends the replica's process, if one was started (from Run, before the primary stops).
func stopReplica() {
	r := sharedReplica
	if r == nil {
		return
	}
	_ = r.admin.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		<-r.exited
		r.cmd = nil
	}
}

func startReplica(primary *server) (*Replica, error) {
	dir := filepath.Join(primary.dir, "replica")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := installData(dir, primary.launcher); err != nil {
		return nil, err
	}
	port, err := testkit.Port()
	if err != nil {
		return nil, err
	}
	r := &Replica{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), primary: primary, dir: dir, port: port}
	if err := r.launch(); err != nil {
		return nil, err
	}
	// Root over the replica's own socket; the primary's TCP root arrives by replication.
	pool, err := r.waitAnswers(socketConfig(dir))
	if err != nil {
		return nil, err
	}
	defer pool.Close()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	password := randomHex(16)
	for _, stmt := range []string{
		"CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY '" + password + "'",
		"GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
	} {
		if _, err := primary.admin.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("replication user on the primary: %w", err)
		}
	}
	// From the first binary log on: the primary logged everything since its first start, users included.
	_, primaryPort, _ := net.SplitHostPort(primary.adminCfg.Addr)
	if _, err := pool.ExecContext(ctx, "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT="+primaryPort+
		", MASTER_USER='repl', MASTER_PASSWORD='"+password+"', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"); err != nil {
		return nil, fmt.Errorf("change master: %w", err)
	}
	if _, err := pool.ExecContext(ctx, "START SLAVE"); err != nil {
		return nil, fmt.Errorf("start slave: %w", err)
	}
	if err := waitFor(ctx, primary.admin, pool); err != nil {
		return nil, fmt.Errorf("replica did not catch up: %w\n--- log tail ---\n%s", err, logTail(filepath.Join(dir, "mariadbd.log"), 30))
	}
	cfg := primary.adminCfg.Clone()
	cfg.Addr = r.Addr
	if r.admin, err = openPool(cfg, 10*time.Second); err != nil {
		return nil, fmt.Errorf("root on the replica: %w", err)
	}
	return r, nil
}

// launch starts the replica's mariadbd (scripts/mariadb.sh's replica role: read_only, its own server id, no
// binary log of its own).
func (r *Replica) launch() error {
	cmd, exited, err := launch(r.dir, r.primary.launcher, r.port, "replica")
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	return nil
}

func (r *Replica) waitAnswers(cfg *mysql.Config) (*sql.DB, error) {
	deadline := time.Now().Add(readyTimeout)
	for {
		pool, err := openPool(cfg, time.Second)
		if err == nil {
			return pool, nil
		}
		select {
		case werr := <-r.exited:
			return nil, fmt.Errorf("replica mariadbd exited (%v)\n%s", werr, logTail(filepath.Join(r.dir, "mariadbd.log"), 30))
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("replica not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor waits until replica has applied everything primary has written so far.
func waitFor(ctx context.Context, primary, replica *sql.DB) error {
	var pos string
	if err := primary.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return err
	}
	timeout := 30.0
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d).Seconds()
	}
	var res int
	if err := replica.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout).Scan(&res); err != nil {
		return err
	}
	if res != 0 {
		return fmt.Errorf("position %s not reached", pos)
	}
	return nil
}

// CatchUp waits until the replica has applied everything the primary has written.
func (r *Replica) CatchUp(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := waitFor(ctx, r.primary.admin, r.admin); err != nil {
		tb.Fatalf("mysqltest: replica catch-up: %v", err)
	}
}

// Exec runs statements as root on the replica (e.g. "STOP SLAVE SQL_THREAD").
func (r *Replica) Exec(tb testing.TB, stmts ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, s := range stmts {
		if _, err := r.admin.ExecContext(ctx, s); err != nil {
			tb.Fatalf("mysqltest: replica: %s: %v", s, err)
		}
	}
}

// SetDelay makes the replica apply each transaction d after the primary committed it (MASTER_DELAY).
func (r *Replica) SetDelay(tb testing.TB, d time.Duration) {
	tb.Helper()
	r.Exec(tb, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY="+strconv.Itoa(int(d.Seconds())), "START SLAVE")
}

// ComSelect is the replica's SELECT counter (SHOW GLOBAL STATUS), to prove reads reached it.
func (r *Replica) ComSelect(tb testing.TB) int64 {
	tb.Helper()
	var (
		name string
		n    int64
	)
	if err := r.admin.QueryRow("SHOW GLOBAL STATUS LIKE 'Com_select'").Scan(&name, &n); err != nil {
		tb.Fatalf("mysqltest: replica Com_select: %v", err)
	}
	return n
}

// Open returns a root pool on db's database on the replica, closed in tb.Cleanup.
func (r *Replica) Open(tb testing.TB, db *DB) *sql.DB {
	tb.Helper()
	pool, err := sql.Open("mysql", r.DSNFor(db, r.primary.adminCfg.User, r.primary.adminCfg.Passwd))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pool.Close() })
	return pool
}

// DSNFor is db.DSNFor on the replica: users created on the primary are replicated.
func (r *Replica) DSNFor(db *DB, user, password string) string {
	cfg, err := mysql.ParseDSN(db.DSNFor(user, password))
	if err != nil {
		panic(err) // DSNFor formats what ParseDSN reads
	}
	cfg.Addr = r.Addr
	return cfg.FormatDSN()
}

// Stop shuts the replica's server down (as a crash or an operator would take it away) and waits until it is gone.
func (r *Replica) Stop(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(cleanupTimeout):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.cmd = nil
}

// Start starts a stopped replica again on the same port and data; replication resumes where it stopped.
func (r *Replica) Start(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	up := r.cmd != nil
	r.mu.Unlock()
	if up {
		return
	}
	if err := r.launch(); err != nil {
		tb.Fatalf("mysqltest: restart replica: %v", err)
	}
	cfg := r.primary.adminCfg.Clone()
	cfg.Addr, cfg.Logger = r.Addr, &mysql.NopLogger{}
	pool, err := r.waitAnswers(cfg)
	if err != nil {
		tb.Fatalf("mysqltest: restart replica: %v", err)
	}
	_ = pool.Close()
}

// restore puts the replica back as NewReplica gave it: running, replicating without delay, caught up.
func (r *Replica) restore(tb testing.TB) {
	tb.Helper()
	r.Start(tb)
	r.Exec(tb, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=0", "START SLAVE")
	r.CatchUp(tb)
}
