// Package stacktest starts the whole Pizza Joint stack for integration tests: a private MariaDB, a Consul agent,
// a Vault server, the bootstrap, order, gateway and their Connect sidecars. It runs scripts/stack.sh, the same
// script as `make run`, in a temporary state folder on free ports, so tests never touch a developer's stack
// and every test run also tests `make run`.
//
// A test package starts one stack in TestMain (it takes tens of seconds) and shares it:
//
//	var stack *stacktest.Stack
//	func TestMain(m *testing.M) { os.Exit(stacktest.Main(m, stacktest.Options{}, &stack)) }
package stacktest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// Options change the stack for a test package.
type Options struct {
	// Env adds settings for scripts/stack.sh and scripts/bootstrap.sh, e.g. DB_CREDS_TTL=5s.
	Env map[string]string
	// GoFlags are the go build flags of the stack's services (STACK_GOFLAGS), e.g. "-race" so that a data race
	// anywhere in the running system shows up in its logs. Benchmarks leave it empty: -race slows code ~5×.
	GoFlags string
	// AfterTests runs once every test has run, while the stack is still up (e.g. to scan its logs); an
	// error fails the run.
	AfterTests func(*Stack) error
	// ViaMake starts and stops the stack with `make run` and `make stop`, the README's commands, instead of
	// scripts/stack.sh itself.
	ViaMake bool
}

// Stack is a running stack.
type Stack struct {
	Root, Dir string // the repository, and the stack's state folder
	Ports     Ports
	// GatewayURL is the public edge, e.g. https://127.0.0.1:43121.
	GatewayURL string
	// ConsulAddr is the agent's HTTP API: unix:///<state>/consul.sock, open to the mesh's group (and root) only.
	ConsulAddr string
	// ConsulHTTPS is the operators' HTTPS front (UI and API), bound on every interface: https://127.0.0.1:port.
	ConsulHTTPS string
	VaultAddr   string // https://127.0.0.1:port
	// JaegerURL is the trace UI and its HTTP API (/api/traces/<id>): http://127.0.0.1:port, root's only.
	JaegerURL string
	// CACert is the project CA's file: it signed the gateway's, Vault's and Consul's listener certificates.
	CACert string
	// HTTP trusts the stack's development CA.
	HTTP *http.Client
	// Observer is a read-only MySQL pool over everything (incl. mysql.user and the process list), for assertions.
	Observer *sql.DB

	env     []string
	viaMake bool

	consulOperator string // a Consul token leased for the tests' consul CLI calls (Tool), made on first use
}

// Ports are the stack's listeners.
type Ports struct {
	MySQL, MySQLReplica, ConsulHTTPS, ConsulServer, ConsulSerfLAN, ConsulSerfWAN, Vault int
	Gateway, Order, OrderUpstream, SidecarMin, SidecarMax                               int
	GatewayMetrics                                                                      int // Prometheus /metrics, root's only
	// NATS and its monitoring; NATSUpstream is order replica 1's upstream to NATS (replica N: + N-1).
	NATS, NATSMonitor, NATSUpstream int
	// Jaeger: the OTLP/HTTP receiver the services export to, the UI with its HTTP API, and the query's gRPC.
	JaegerOTLP, JaegerUI, JaegerQueryGRPC int
}

// Main starts a stack into *s, runs the tests, prints the stack's logs if any test failed, and stops it.
func Main(m *testing.M, opts Options, s **Stack) int {
	st, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stacktest:", err)
		if st != nil {
			st.DumpLogs(os.Stderr)
			_ = st.Stop()
		}
		return 1
	}
	*s = st
	code := m.Run()
	if code == 0 && opts.AfterTests != nil {
		if err := opts.AfterTests(st); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: after the tests:", err)
			code = 1
		}
	}
	if code != 0 {
		st.DumpLogs(os.Stderr)
	}
	if err := st.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stacktest: stop:", err)
		code = 1
	}
	if code == 0 {
		_ = os.RemoveAll(st.Dir)
	}
	return code
}

// Start brings up a stack in a new temporary folder. On error the returned Stack (if any) can be inspected
// and must be stopped.
func Start(opts Options) (*Stack, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	// Short: unix socket paths must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "pz")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts()
	if err != nil {
		return nil, err
	}
	s := &Stack{Root: root, Dir: dir, Ports: ports,
		GatewayURL:  fmt.Sprintf("https://127.0.0.1:%d", ports.Gateway),
		ConsulAddr:  "unix://" + filepath.Join(dir, "consul.sock"),
		ConsulHTTPS: fmt.Sprintf("https://127.0.0.1:%d", ports.ConsulHTTPS),
		VaultAddr:   fmt.Sprintf("https://127.0.0.1:%d", ports.Vault),
		JaegerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports.JaegerUI),
		CACert:      filepath.Join(dir, "certs", "ca.pem"),
	}
	s.env = append(os.Environ(),
		"STATE_DIR="+dir,
		"CERTS_DIR="+filepath.Join(dir, "certs"),
		"MYSQL_PORT="+strconv.Itoa(ports.MySQL),
		"MYSQL_REPLICA_PORT="+strconv.Itoa(ports.MySQLReplica),
		"CONSUL_HTTPS_PORT="+strconv.Itoa(ports.ConsulHTTPS),
		// Every interface, as on an operator's machine: the tests attack it from the machine's own LAN address.
		"CONSUL_HTTPS_BIND=0.0.0.0",
		"CONSUL_SERVER_PORT="+strconv.Itoa(ports.ConsulServer),
		"CONSUL_SERF_LAN_PORT="+strconv.Itoa(ports.ConsulSerfLAN),
		"CONSUL_SERF_WAN_PORT="+strconv.Itoa(ports.ConsulSerfWAN),
		"CONSUL_SIDECAR_MIN_PORT="+strconv.Itoa(ports.SidecarMin),
		"CONSUL_SIDECAR_MAX_PORT="+strconv.Itoa(ports.SidecarMax),
		"VAULT_PORT="+strconv.Itoa(ports.Vault),
		fmt.Sprintf("GATEWAY_ADDR=127.0.0.1:%d", ports.Gateway),
		fmt.Sprintf("GATEWAY_METRICS_ADDR=127.0.0.1:%d", ports.GatewayMetrics),
		fmt.Sprintf("ORDER_ADDR=127.0.0.1:%d", ports.Order),
		"ORDER_UPSTREAM_PORT="+strconv.Itoa(ports.OrderUpstream),
		"NATS_PORT="+strconv.Itoa(ports.NATS),
		"NATS_MONITOR_PORT="+strconv.Itoa(ports.NATSMonitor),
		"NATS_UPSTREAM_PORT="+strconv.Itoa(ports.NATSUpstream),
		"JAEGER_OTLP_PORT="+strconv.Itoa(ports.JaegerOTLP),
		"JAEGER_UI_PORT="+strconv.Itoa(ports.JaegerUI),
		"JAEGER_QUERY_GRPC_PORT="+strconv.Itoa(ports.JaegerQueryGRPC),
		"ORDER_SERVICE_ID=order-1",
		"GATEWAY_SERVICE_ID=gateway-1",
		"STACK_MESH=on",
		"CONSUL_HTTP_ADDR="+s.ConsulAddr,
		"VAULT_ADDR="+s.VaultAddr,
		"VAULT_CACERT="+s.CACert,
		"CONSUL_CACERT="+s.CACert,
	)
	for k, v := range opts.Env {
		s.env = append(s.env, k+"="+v)
	}
	if opts.GoFlags != "" {
		s.env = append(s.env, "STACK_GOFLAGS="+opts.GoFlags)
	}
	s.viaMake = opts.ViaMake
	if out, err := s.lifecycle(10*time.Minute, "start"); err != nil {
		return s, fmt.Errorf("starting the stack: %w\n%s", err, out)
	}
	if s.HTTP, err = s.httpClient(); err != nil {
		return s, err
	}
	if s.Observer, err = s.observer(); err != nil {
		return s, err
	}
	return s, nil
}

// Stop stops every process of the stack.
func (s *Stack) Stop() error {
	if s.Observer != nil {
		s.Observer.Close()
	}
	out, err := s.lifecycle(3*time.Minute, "stop")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// Script runs scripts/NAME with the stack's environment and returns its combined output.
func (s *Stack) Script(timeout time.Duration, name string, args ...string) (string, error) {
	return s.scriptIn(timeout, "", name, args...)
}

// lifecycle runs stack.sh start or stop, or with ViaMake the README's `make run` or `make stop`, with the
// stack's environment.
func (s *Stack) lifecycle(timeout time.Duration, command string) (string, error) {
	if !s.viaMake {
		return s.Script(timeout, "stack.sh", command)
	}
	target := map[string]string{"start": "run", "stop": "stop"}[command]
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", target)
	cmd.Dir, cmd.Env = s.Root, s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// scriptIn is Script with stdin (e.g. the SQL for mariadb.sh sql, which never goes on a command line).
func (s *Stack) scriptIn(timeout time.Duration, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.Root, "scripts", name), args...)
	cmd.Dir = s.Root
	cmd.Env = s.env
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Env returns the stack's environment (for tools the test runs).
func (s *Stack) Env() []string { return s.env }

// OperatorToken is the operator's Vault token (policy vault/policies/operator.hcl), as the runbook uses it.
func (s *Stack) OperatorToken() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "vault", "operator-token"))
	return strings.TrimSpace(string(b)), err
}

// Meshctl runs the provisioning program with the stack's settings (scripts/stack.sh meshctl) and returns its
// standard output; its log goes to the stack's meshctl.log.
func (s *Stack) Meshctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.Root, "scripts", "stack.sh"), append([]string{"meshctl"}, args...)...)
	cmd.Dir, cmd.Env = s.Root, s.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("meshctl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Tool runs consul or vault (from the cache scripts/tools.sh fills) with the stack's environment, the
// operator's Vault token in VAULT_TOKEN and a Consul operator token in CONSUL_HTTP_TOKEN (never on the command
// line), feeding stdin if not nil.
func (s *Stack) Tool(name string, stdin []byte, args ...string) (string, error) {
	bin, err := s.Script(20*time.Minute, "tools.sh", "ensure", name)
	if err != nil {
		return "", fmt.Errorf("tools.sh ensure %s: %w\n%s", name, err, bin)
	}
	lines := strings.Split(strings.TrimSpace(bin), "\n")
	token, err := s.OperatorToken()
	if err != nil {
		return "", err
	}
	env := append(slices.Clone(s.env), "VAULT_TOKEN="+token)
	if name == "consul" {
		if s.consulOperator == "" {
			if s.consulOperator, err = s.Meshctl("token", "consul-operator"); err != nil {
				return "", err
			}
		}
		env = append(env, "CONSUL_HTTP_TOKEN="+s.consulOperator)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, lines[len(lines)-1], args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// StaffToken issues a staff token for name (meshctl token staff, as `make staff-token`) and returns it.
func (s *Stack) StaffToken(t testing.TB, name string) string {
	t.Helper()
	token, err := s.Meshctl("token", "staff", name) // the token alone is on stdout
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// Logs returns the paths of the stack's log files.
func (s *Stack) Logs() []string {
	files, _ := filepath.Glob(filepath.Join(s.Dir, "logs", "*.log"))
	return files
}

// DumpLogs writes the tail of every log but Vault's audit log (long JSON, no diagnosis), for a failed run.
func (s *Stack) DumpLogs(w *os.File) {
	for _, f := range s.Logs() {
		if strings.HasSuffix(f, "audit.log") {
			continue
		}
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Fprintf(w, "---- %s (last %d lines)\n%s\n", f, min(40, len(lines)), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// Pid returns the pid of a stack process by its name (order, order-2, gateway, sidecar-order-1, consul,
// vault, mariadb, mariadb-replica): the process itself, which its supervisor (scripts/supervise.sh) starts again if it dies. Killing it
// is a crash; to stop a process for good, signal SupervisorPid.
func (s *Stack) Pid(name string) (int, error) {
	return readPid(filepath.Join(s.Dir, "pids", name+".child"))
}

// SupervisorPid returns the pid of the supervisor of a stack process: TERM stops the process (it still
// deregisters and gives its tokens back) without a restart, until `stack.sh start` starts it again.
func (s *Stack) SupervisorPid(name string) (int, error) {
	return readPid(filepath.Join(s.Dir, "pids", name+".pid"))
}

// Restarts returns how many times the supervisor of a stack process started it again.
func (s *Stack) Restarts(name string) (int, error) {
	return readPid(filepath.Join(s.Dir, "pids", name+".restarts"))
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (s *Stack) httpClient() (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(s.Dir, "certs", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no CA certificate in %s/certs/ca.pem", s.Dir)
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 64,
		},
	}, nil
}

// RootSQL runs sqlText as MariaDB's root over the unix socket (scripts/mariadb.sh sql), the only way root can
// log in. The text goes on stdin, so a password in it never reaches a command line.
func (s *Stack) RootSQL(sqlText string) (string, error) {
	return s.scriptIn(time.Minute, sqlText, "mariadb.sh", "sql", filepath.Join(s.Dir, "mariadb"))
}

// observer creates a read-only MySQL user through root's unix socket (root has no password to use over TCP).
func (s *Stack) observer() (*sql.DB, error) {
	pass := strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.Itoa(os.Getpid())
	sqlText := fmt.Sprintf("CREATE OR REPLACE USER 'observer'@'%%' IDENTIFIED BY '%s';\n"+
		"GRANT SELECT, PROCESS ON *.* TO 'observer'@'%%';\n", pass)
	if out, err := s.RootSQL(sqlText); err != nil {
		return nil, fmt.Errorf("create observer user: %w\n%s", err, out)
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net = "observer", pass, "tcp"
	cfg.Addr = fmt.Sprintf("127.0.0.1:%d", s.Ports.MySQL)
	cfg.DBName = "pizza"
	cfg.ParseTime = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return db, db.Ping()
}

// MaxOrderReplicas is how many order replicas (ORDER_REPLICAS) a test stack has ports for.
const MaxOrderReplicas = 3

// freePorts reserves the stack's listener ports and a block of 20 for its sidecars (testkit.Block), for the
// rest of the process: no other stack of this process or of another test process gets any of them, and a
// process the supervisor restarts can bind its port again. A program outside the tests can still take one
// between the pick and the use; the stack script then fails loudly.
func freePorts() (Ports, error) {
	var p Ports
	// The single listeners, then order's replicas on consecutive ports; Vault also binds its port + 1 (its
	// cluster listener), so the port after Vault's is left to it.
	const n = 13 + 2*MaxOrderReplicas + 3
	base, err := testkit.Block(testkit.StackListeners, n)
	if err != nil {
		return p, err
	}
	vaultCluster := 0
	for i, f := range []*int{&p.MySQL, &p.MySQLReplica, &p.ConsulHTTPS, &p.ConsulServer, &p.ConsulSerfLAN,
		&p.ConsulSerfWAN, &p.Vault, &vaultCluster, &p.Gateway, &p.OrderUpstream, &p.GatewayMetrics, &p.NATS, &p.NATSMonitor} {
		*f = base + i
	}
	// Then a port per replica for its upstream to NATS, and order last: its replicas take the ports after it.
	p.NATSUpstream = base + 13
	p.Order = p.NATSUpstream + MaxOrderReplicas
	// Jaeger's three after the last replica's.
	p.JaegerOTLP = p.Order + MaxOrderReplicas
	p.JaegerUI, p.JaegerQueryGRPC = p.JaegerOTLP+1, p.JaegerOTLP+2
	// Consul allocates sidecar ports from a range: 20 in a row.
	if p.SidecarMin, err = testkit.Block(testkit.StackSidecars, 20); err != nil {
		return p, err
	}
	p.SidecarMax = p.SidecarMin + 19
	return p, nil
}
