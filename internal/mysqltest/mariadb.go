package mysqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pizzajoint/mesh/internal/testkit"
)

const (
	dirPrefix      = "pizza-mysqltest-"
	installTimeout = 2 * time.Minute
	readyTimeout   = 60 * time.Second
	// startAttempts covers the race between picking a free port and mariadbd binding it (a program outside the
	// tests may bind it meanwhile).
	startAttempts = 3
)

// ephemeralOpts are the tests' only mariadbd options beyond scripts/mariadb.sh's: the data is thrown away after the
// run, so skip the fsync per commit that only buys crash safety.
var ephemeralOpts = []string{"--innodb-flush-log-at-trx-commit=2"}

// findLauncher finds scripts/mariadb.sh in the repository: the launcher the local stack runs too, the one place
// that initialises a data folder and knows mariadbd's options.
func findLauncher() (string, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("%w (or set %s to a root DSN of a running server)", err, EnvDSN)
	}
	return filepath.Join(root, "scripts", "mariadb.sh"), nil
}

// startPrivate initialises a data directory in a temp dir and starts mariadbd on a free 127.0.0.1 port.
func startPrivate() (*server, error) {
	launcher, err := findLauncher()
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
	srv, err := startIn(dir, launcher)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	srv.dir, srv.launcher = dir, launcher
	return srv, nil
}

// installData initialises dir's data folder (scripts/mariadb.sh init): root may log in over the unix socket
// only, as the OS user running the tests; no password exists yet.
func installData(dir, launcher string) error {
	installLog := filepath.Join(dir, "install.log")
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	install := exec.CommandContext(ctx, launcher, "init", dir)
	if out, err := runLogged(install, installLog); err != nil {
		return fmt.Errorf("%s init: %v\n--- %s (tail) ---\n%s", launcher, err, installLog, out)
	}
	return nil
}

func startIn(dir, launcher string) (*server, error) {
	if err := installData(dir, launcher); err != nil {
		return nil, err
	}

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := testkit.Port()
		if err != nil {
			return nil, err
		}
		srv, err, retry := startMariadbd(dir, launcher, port)
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

// startMariadbd starts the primary and waits until root can log in. retry reports a lost port race.
func startMariadbd(dir, launcher string, port int) (_ *server, _ error, retry bool) {
	logPath := filepath.Join(dir, "mariadbd.log")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The primary writes a binary log with GTIDs from its first start, so a replica (NewReplica) can follow
	// from the beginning.
	cmd, exited, err := launch(dir, launcher, port, "primary")
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

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case werr := <-exited:
			tail := logTail(logPath, 40)
			retry = strings.Contains(tail, "Address already in use") || strings.Contains(tail, "Do you already have another server running")
			return nil, fmt.Errorf("mariadbd exited before it was ready (%v)\n--- %s (tail) ---\n%s", werr, logPath, tail), retry
		default:
		}
		pool, err := openPool(socketConfig(dir), time.Second)
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

// launch runs `scripts/mariadb.sh run dir port role`, which execs mariadbd: the child is the server itself, and
// dies with the test process (Pdeathsig survives the exec).
func launch(dir, launcher string, port int, role string) (*exec.Cmd, <-chan error, error) {
	logPath := filepath.Join(dir, "mariadbd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(launcher, append([]string{"run", dir, strconv.Itoa(port), role, "--"}, ephemeralOpts...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	configureChild(cmd)
	exited, err := startPinned(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("start mariadbd: %w", err)
	}
	return cmd, exited, nil
}

// socketConfig logs in to the server of dir over its unix socket as the OS user running the tests (unix_socket
// authentication: scripts/mariadb.sh init makes that user, and root, the socket's only accounts).
func socketConfig(dir string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = osUser()
	cfg.Net = "unix"
	cfg.Addr = filepath.Join(dir, "mariadbd.sock")
	cfg.Timeout = 5 * time.Second
	// During start-up the server resets connections; those are expected, not worth the driver's stderr log.
	cfg.Logger = &mysql.NopLogger{}
	return cfg
}

func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// secure gives the tests a root over TCP: root@127.0.0.1 with a random password (the server has no TCP account
// for root, and no anonymous users), so other local users cannot log in to the tests' server. It sets the
// password in cfg and returns a root pool that uses it. The CREATE USER goes to the binary log, so a replica
// (NewReplica) gets the same account.
func secure(socketPool *sql.DB, cfg *mysql.Config) (*sql.DB, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	password := randomHex(16)
	account := quoteString(cfg.User) + "@'127.0.0.1'"
	for _, stmt := range []string{
		"CREATE USER " + account + " IDENTIFIED BY '" + password + "'",
		"GRANT ALL PRIVILEGES ON *.* TO " + account + " WITH GRANT OPTION",
	} {
		if _, err := socketPool.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.SplitN(stmt, " IDENTIFIED", 2)[0], err)
		}
	}
	cfg.Passwd = password
	return openPool(cfg, 10*time.Second)
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
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
		if pidAlive(filepath.Join(dir, "owner.pid")) || pidAlive(filepath.Join(dir, "mariadbd.pid")) {
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
