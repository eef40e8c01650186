package mysqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	dirPrefix      = "pizza-mysqltest-"
	installTimeout = 2 * time.Minute
	readyTimeout   = 60 * time.Second
	// startAttempts covers the race between picking a free port and mariadbd binding it.
	startAttempts = 3
)

// binDirs are searched after PATH: Debian puts mariadbd in /usr/sbin, which is often not on a user's PATH.
var binDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"}

// lookBinary finds a MariaDB program on PATH or in dirs, or says how to install it.
func lookBinary(name string, dirs []string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH: run 'make test', which installs mariadb-server, "+
		"or apt-get install mariadb-server (or set %s to a root DSN of a running server)", name, EnvDSN)
}

// startPrivate initialises a data directory in a temp dir and starts mariadbd on a free 127.0.0.1 port.
func startPrivate() (*server, error) {
	mariadbd, err := lookBinary("mariadbd", binDirs)
	if err != nil {
		return nil, err
	}
	installDB, err := lookBinary("mariadb-install-db", binDirs)
	if err != nil {
		return nil, err
	}
	removeOrphans(os.TempDir())

	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	// owner.pid lets a later run remove this directory if this process dies without Run's cleanup.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	srv, err := startIn(dir, mariadbd, installDB)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	srv.dir, srv.mariadbd, srv.installDB = dir, mariadbd, installDB
	return srv, nil
}

// userArgs are the flags mariadbd and mariadb-install-db need for the user the tests run as.
func userArgs() []string {
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root unless told to; as another user the flag is not needed.
		return []string{"--user=root"}
	}
	return nil
}

// installData initialises an empty data directory under dir.
func installData(dir, dataDir, installDB string) error {
	installLog := filepath.Join(dir, "install.log")
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	// --no-defaults must come first; it keeps /etc/mysql and ~/.my.cnf out of the private server.
	// A private tmpdir: servers initialising at once in /tmp can delete each other's temporary tables.
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return err
	}
	install := exec.CommandContext(ctx, installDB, append([]string{"--no-defaults",
		"--datadir=" + dataDir, "--tmpdir=" + tmpDir, "--auth-root-authentication-method=normal", "--skip-test-db"}, userArgs()...)...)
	if out, err := runLogged(install, installLog); err != nil {
		return fmt.Errorf("mariadb-install-db: %v\n--- %s (tail) ---\n%s", err, installLog, out)
	}
	return nil
}

func startIn(dir, mariadbd, installDB string) (*server, error) {
	dataDir := filepath.Join(dir, "data")
	if err := installData(dir, dataDir, installDB); err != nil {
		return nil, err
	}

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		srv, err, retry := startMariadbd(dir, dataDir, mariadbd, port)
		if err == nil {
			return srv, nil
		}
		lastErr = err
		if !retry {
			break
		}
	}
	return nil, lastErr
}

// startMariadbd starts the server and waits until root can log in. retry reports a lost port race.
func startMariadbd(dir, dataDir, mariadbd string, port int) (_ *server, _ error, retry bool) {
	logPath := filepath.Join(dir, "mariadbd.log")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// A binary log with GTIDs from the first start, so a replica (NewReplica) can follow from the beginning.
	cmd, exited, err := launch(dir, dataDir, mariadbd, port, "--server-id=1", "--log-bin="+filepath.Join(dir, "binlog"),
		"--binlog-format=ROW", "--sync-binlog=0")
	if err != nil {
		return nil, err, false
	}
	stop := func() {
		_ = cmd.Process.Kill() // the data is disposable, so no clean shutdown is needed
		<-exited
		_ = os.RemoveAll(dir)
	}
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.ParseTime = true
	cfg.Timeout = 5 * time.Second
	// During start-up the server resets connections; those are expected, not worth the driver's stderr log.
	pollCfg := cfg.Clone()
	pollCfg.Logger = &mysql.NopLogger{}

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case werr := <-exited:
			tail := logTail(logPath, 40)
			retry = strings.Contains(tail, "Address already in use") || strings.Contains(tail, "Do you already have another server running")
			return nil, fmt.Errorf("mariadbd exited before it was ready (%v)\n--- %s (tail) ---\n%s", werr, logPath, tail), retry
		default:
		}
		pool, err := openPool(pollCfg, time.Second)
		if err == nil {
			admin, err := secure(pool, cfg)
			_ = pool.Close()
			if err != nil {
				kill()
				return nil, fmt.Errorf("secure mariadbd: %w\n--- %s (tail) ---\n%s", err, logPath, logTail(logPath, 40)), false
			}
			return &server{admin: admin, adminCfg: cfg, stop: stop}, nil, false
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("mariadbd on %s not ready after %s: %v\n--- %s (tail) ---\n%s",
				addr, readyTimeout, err, logPath, logTail(logPath, 40)), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// launch starts mariadbd on dir's data with the options every private server shares, plus extra.
func launch(dir, dataDir, mariadbd string, port int, extra ...string) (*exec.Cmd, <-chan error, error) {
	logPath := filepath.Join(dir, "mariadbd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	args := append([]string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--tmpdir=" + filepath.Join(dir, "tmp"),
		"--socket=" + filepath.Join(dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--port=" + strconv.Itoa(port),
		"--bind-address=127.0.0.1",
		"--log-error=" + logPath,
		"--max-connections=500",
		"--innodb-buffer-pool-size=64M",
		// The data is thrown away after the run, so skip the fsync per commit that only buys crash safety.
		"--innodb-flush-log-at-trx-commit=2",
		// MariaDB defaults to latin1; MySQL 8 (compose, production) to utf8mb4. Tests must see the latter.
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
		// DATETIME values round-trip with the driver's default loc=UTC only if the session zone is UTC too.
		"--default-time-zone=+00:00",
	}, userArgs()...)
	cmd := exec.Command(mariadbd, append(args, extra...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	configureChild(cmd)
	exited, err := startPinned(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("start mariadbd: %w", err)
	}
	return cmd, exited, nil
}

// secure drops the anonymous users (they shadow 'x'@'%' logins over 127.0.0.1) and gives root a random password,
// so other local users cannot log in to the tests' server. It sets the password in cfg and returns a root pool
// that uses it.
func secure(pool *sql.DB, cfg *mysql.Config) (*sql.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	accounts, err := queryAccounts(ctx, pool, "SELECT User, Host FROM mysql.user WHERE User IN ('', 'root')")
	if err != nil {
		return nil, err
	}
	password := randomHex(16)
	for _, a := range accounts {
		stmt := "DROP USER " + a.String()
		if a.user == "root" {
			stmt = "ALTER USER " + a.String() + " IDENTIFIED BY '" + password + "'"
		}
		if _, err := pool.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.SplitN(stmt, " IDENTIFIED", 2)[0], err)
		}
	}
	cfg.Passwd = password
	return openPool(cfg, 10*time.Second)
}

type account struct{ user, host string }

func (a account) String() string { return quoteString(a.user) + "@" + quoteString(a.host) }

func queryAccounts(ctx context.Context, db *sql.DB, query string) ([]account, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []account
	for rows.Next() {
		var a account
		if err := rows.Scan(&a.user, &a.host); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// freePort asks the kernel for a free port. Another process may take it before mariadbd binds it; the caller
// retries on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startPinned starts cmd from a goroutine locked to its OS thread and keeps that thread until the child exits.
// Linux's Pdeathsig fires when the *thread* that forked the child ends, not the process, so an unpinned start
// could kill mariadbd early when the Go runtime retires the thread, or never if the thread outlives the test.
func startPinned(cmd *exec.Cmd) (exited <-chan error, err error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
		// Returning while locked retires this thread; the child is already gone.
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// runLogged runs cmd with its output in logPath and returns the log's tail on failure.
func runLogged(cmd *exec.Cmd, logPath string) (string, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd.Stdout = f
	cmd.Stderr = f
	configureChild(cmd)
	if err := cmd.Run(); err != nil {
		return logTail(logPath, 40), err
	}
	return "", nil
}

// logTail returns the last n lines of a log file, for failure messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeOrphans deletes data directories left by test processes that died without Run's cleanup (their
// mariadbd died with them through Pdeathsig). Directories of live processes are left alone.
func removeOrphans(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*"))
	for _, dir := range dirs {
		if pidAlive(filepath.Join(dir, "owner.pid")) || pidAlive(filepath.Join(dir, "mysqld.pid")) {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "owner.pid")); errors.Is(err, os.ErrNotExist) {
			continue // not ours to judge: a directory being created right now has no owner file yet
		}
		_ = os.RemoveAll(dir)
	}
}

// pidAlive reports whether the process named in pidFile is running; a missing or unreadable file is "not alive".
func pidAlive(pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return processAlive(pid)
}
