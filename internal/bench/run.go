package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pizzajoint/mesh/internal/stacktest"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

// Options of a run.
type Options struct {
	Levels           []int
	Warmup, Duration time.Duration
	// ProfileDir, when set, turns on pprof in both stacks' services and saves CPU profiles of gateway and order
	// taken during the mesh measurement at ProfileClients clients.
	ProfileDir     string
	ProfileClients int
	// StackEnv goes to both stacks' services, e.g. ORDER_DB_MAX_OPEN=8 to try another pool size.
	StackEnv map[string]string
	// CeilingPool is the ceiling's MaxOpen connections; 32 is the order service's default.
	CeilingPool int
	// Variants are more mesh stacks, each with settings of its own on top of StackEnv, measured in the same
	// rotation as the three setups, so a setting's cost is read against the mesh in one run.
	Variants []Variant
	// Rates are the fixed request rates (orders/s) of the open-loop measurements of direct and mesh, after the
	// closed-loop levels: what the sidecars add at a load the machine holds.
	Rates []int
	Log   io.Writer
}

// Variant is a mesh stack with other settings, e.g. untraced (STACK_TRACES=0) or semi-sync (DB_SEMI_SYNC=1).
type Variant struct {
	Name string
	Env  map[string]string
}

// Setup is the variant's name in the report's tables.
func (v Variant) Setup() string { return SetupMesh + " " + v.Name }

// target is one setup under load: how to reach it and which processes to watch.
type target struct {
	setup  string
	url    string
	client func(clients int) *http.Client
	// procs by component (see Components); services are also watched for peak RSS.
	procs map[string][]Process
	// mem are the processes whose memory the report shows, each by its own name.
	mem   []Process
	debug map[string]string // service → pprof address
}

// Run starts a stack without sidecars and one with the mesh, measures the three setups level by level and
// returns the report. It stops both stacks before returning.
func Run(ctx context.Context, opts Options) (rep Report, err error) {
	logf := func(format string, a ...any) { fmt.Fprintf(opts.Log, "bench: "+format+"\n", a...) }
	rep = Report{Date: time.Now(), GoVersion: runtime.Version(), Warmup: opts.Warmup, Duration: opts.Duration,
		Levels: opts.Levels, Machine: machine(), Commit: commit(), PeakRSSPerMeasure: true, Variants: opts.Variants,
		Rates: opts.Rates}

	logf("starting %d stacks (direct: no sidecars; mesh: Consul Connect sidecars; %d variants of the mesh), two at a time, about a minute each pair",
		2+len(opts.Variants), len(opts.Variants))
	// Every stack has its own settings and pprof addresses; index 0 is direct, 1 the mesh, then the variants.
	variantEnvs := []map[string]string{nil, nil}
	for _, v := range opts.Variants {
		variantEnvs = append(variantEnvs, v.Env)
	}
	envs, debugs := make([]map[string]string, len(variantEnvs)), make([]map[string]string, len(variantEnvs))
	for i, venv := range variantEnvs {
		sidecars := "on"
		if i == 0 {
			sidecars = "off" // direct
		}
		debugs[i] = debugAddrs(opts.ProfileDir != "")
		envs[i] = stackEnv(sidecars, debugs[i], opts.StackEnv, venv)
	}
	var (
		wg     sync.WaitGroup
		stacks = make([]*stacktest.Stack, len(envs))
		errs   = make([]error, len(envs))
		starts = make(chan struct{}, 2) // two stacks starting at once keep each within its start timeout on 2 cores
	)
	for i, env := range envs {
		wg.Go(func() {
			starts <- struct{}{}
			defer func() { <-starts }()
			stacks[i], errs[i] = stacktest.Start(stacktest.Options{Env: env})
		})
	}
	wg.Wait()
	direct, mesh := stacks[0], stacks[1]
	defer func() {
		for _, s := range stacks {
			if s == nil {
				continue
			}
			if serr := s.Stop(); serr != nil {
				err = errors.Join(err, serr)
			} else if err == nil {
				_ = os.RemoveAll(s.Dir)
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			if stacks[i] != nil {
				stacks[i].DumpLogs(os.Stderr)
			}
			return rep, err
		}
	}

	db, err := ceilingDB(mesh, cmp.Or(opts.CeilingPool, 32))
	if err != nil {
		return rep, err
	}
	defer db.Close()
	_ = db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&rep.DBVersion)

	targets := []*target{
		{setup: SetupCeiling, url: "http://ceiling.invalid/pizza", procs: map[string][]Process{"mariadb": {stackProc(mesh, "mariadb")}},
			client: func(int) *http.Client {
				return &http.Client{Timeout: 30 * time.Second, Transport: SQLTransport{DB: db}}
			}},
		serviceTarget(SetupDirect, direct, debugs[0]),
		serviceTarget(SetupMesh, mesh, debugs[1]),
	}
	for i, v := range opts.Variants {
		targets = append(targets, serviceTarget(v.Setup(), stacks[2+i], debugs[2+i]))
	}
	self := Process{Name: "bench", Pid: os.Getpid()}
	runID := strconv.FormatInt(time.Now().Unix(), 36)
	for li, clients := range opts.Levels {
		// Rotate who goes first, so no setup always runs on a freshly idle (or freshly hot) machine.
		for k := range targets {
			t := targets[(li+k)%len(targets)]
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			profile := opts.ProfileDir != "" && strings.HasPrefix(t.setup, SetupMesh) && clients == opts.ProfileClients
			m := measure(ctx, t, self, clients, 0, opts, runID, profile, logf)
			rep.Measurements = append(rep.Measurements, m)
			s := m.Summary
			logf("%3d clients  %-7s %7.0f orders/s  p50 %s  p99 %s  errors %d", clients, t.setup, s.Throughput,
				ms(s.P50), ms(s.P99), s.Errors)
		}
	}
	// Open loop: direct and mesh at each fixed rate, taking turns like the levels.
	for ri, rate := range opts.Rates {
		for k := range 2 {
			t := targets[1+(ri+k)%2]
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			m := measure(ctx, t, self, OpenLoopStartWorkers, rate, opts, runID, false, logf)
			rep.Fixed = append(rep.Fixed, m)
			s := m.Summary
			logf("%3d orders/s %-7s %7.0f answered/s  p50 %s  p90 %s  p99 %s  errors %d", rate, t.setup, s.Throughput,
				ms(s.P50), ms(s.P90), ms(s.P99), s.Errors)
		}
	}
	return rep, nil
}

// OpenLoopStartWorkers is how many workers a fixed-rate load starts with; vegeta adds more when answers are late.
const OpenLoopStartWorkers = 16

// measure runs one setup: clients workers in a closed loop, or rate orders/s in an open loop when rate > 0.
func measure(ctx context.Context, t *target, self Process, clients, rate int, opts Options, runID string, profile bool,
	logf func(string, ...any)) Measurement {
	conns, keys := clients, fmt.Sprintf("%d", clients)
	if rate > 0 {
		conns, keys = MaxOpenLoopWorkers, fmt.Sprintf("r%d", rate)
	}
	client := t.client(conns)
	defer client.CloseIdleConnections()
	// Idempotency-Keys take no spaces, and a variant's setup name has one.
	orders := NewOrders(t.url, fmt.Sprintf("bench-%s-%s-%s", runID, strings.ReplaceAll(t.setup, " ", "-"), keys), uint64(clients+rate))
	load := Load{Clients: clients, Rate: rate, Duration: opts.Warmup, Client: client, Targeter: orders.Targeter()}
	load.Run(ctx, t.setup+"-warmup")

	procs := map[string][]Process{"bench": {self}}
	for k, v := range t.procs {
		procs[k] = v
	}
	m := Measurement{Setup: t.setup, Clients: clients, Rate: rate, PeakRSS: map[string]int64{}, CPU: map[string]time.Duration{},
		Memory: map[string]Memory{}}
	for _, comp := range []string{"gateway", "order", "sidecars"} {
		for _, p := range procs[comp] {
			_ = p.ResetPeakRSS()
		}
	}
	before := takeSnapshot(procs)

	var pwg sync.WaitGroup
	if profile {
		for svc, addr := range t.debug {
			pwg.Go(func() {
				if err := saveProfile(ctx, addr, max(1, int(opts.Duration.Seconds())-1), filepath.Join(opts.ProfileDir, profileName(t.setup, svc))); err != nil {
					logf("profile %s: %v", svc, err)
				}
			})
		}
	}
	load.Duration = opts.Duration
	samples := load.Run(ctx, t.setup)
	after := takeSnapshot(procs)
	pwg.Wait()

	m.Summary = Summarize(samples)
	for comp, d := range after.cpu {
		m.CPU[comp] = d - before.cpu[comp]
	}
	m.MachineBusy = after.machine.Busy - before.machine.Busy
	m.Syscalls = map[string]int64{}
	for comp, n := range after.calls {
		if b, ok := before.calls[comp]; ok {
			m.Syscalls[comp] = n - b
		}
	}
	for _, comp := range []string{"gateway", "order", "sidecars"} {
		for _, p := range procs[comp] {
			if v, err := p.PeakRSS(); err == nil {
				m.PeakRSS[p.Name] = v
			}
		}
	}
	// Memory as the load ends: still under it, after the warm-up and the measurement filled the pools.
	for _, p := range t.mem {
		if v, err := p.Memory(); err == nil {
			m.Memory[p.Name] = v
		}
	}
	return m
}

// profileName is a CPU profile's file: gateway-cpu.pprof for the mesh, gateway-untraced-cpu.pprof for a variant.
func profileName(setup, svc string) string {
	if v, ok := strings.CutPrefix(setup, SetupMesh+" "); ok {
		return svc + "-" + v + "-cpu.pprof"
	}
	return svc + "-cpu.pprof"
}

// snapshot is what a measurement reads before and after its load: each component's CPU time and read and write
// system calls so far, and the machine's CPU.
type snapshot struct {
	cpu     map[string]time.Duration
	calls   map[string]int64
	machine MachineCPU
}

// takeSnapshot reads every process once. A component whose /proc/<pid>/io cannot be read (another user's
// process, without the privilege) is left out of calls rather than undercounted.
func takeSnapshot(procs map[string][]Process) snapshot {
	sn := snapshot{cpu: map[string]time.Duration{}, calls: map[string]int64{}}
	for comp, ps := range procs {
		var n int64
		callsRead := true
		for _, p := range ps {
			if d, err := p.CPUTime(); err == nil {
				sn.cpu[comp] += d
			}
			v, err := p.Syscalls()
			callsRead = callsRead && err == nil
			n += v
		}
		if callsRead {
			sn.calls[comp] = n
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		sn.machine, _ = ParseMachineCPU(b)
	}
	return sn
}

func serviceTarget(setup string, s *stacktest.Stack, debug map[string]string) *target {
	procs := map[string][]Process{
		"gateway":      {stackProc(s, "gateway")},
		"order":        {stackProc(s, "order")},
		"mariadb":      {stackProc(s, "mariadb")},
		"consul+vault": {stackProc(s, "consul"), stackProc(s, "vault")},
	}
	if setup != SetupDirect {
		procs["sidecars"] = []Process{stackProc(s, "sidecar-gateway-1"), stackProc(s, "sidecar-order-1")}
		procs["sidecars"][0].Name, procs["sidecars"][1].Name = "sidecar-gateway", "sidecar-order"
	}
	var mem []Process
	for _, comp := range []string{"gateway", "order", "sidecars", "mariadb", "consul+vault"} {
		mem = append(mem, procs[comp]...)
	}
	for _, name := range []string{"nats", "jaeger"} {
		if p := stackProc(s, name); p.Pid > 0 {
			mem = append(mem, p)
		}
	}
	ca, err := os.ReadFile(filepath.Join(s.Dir, "certs", "ca.pem"))
	pool := x509.NewCertPool()
	if err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	return &target{setup: setup, url: s.GatewayURL + "/pizza", procs: procs, mem: mem, debug: debug,
		client: func(clients int) *http.Client {
			// One keep-alive connection per client, like that many customers' apps; HTTP/1.1 as most clients.
			return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				MaxConnsPerHost:     clients,
				MaxIdleConnsPerHost: clients,
				IdleConnTimeout:     time.Minute,
			}}
		}}
}

// stackProc finds a stack process's pid; a missing pid file gives pid 0, whose reads fail and count as 0.
func stackProc(s *stacktest.Stack, name string) Process {
	pid, _ := s.Pid(name)
	return Process{Name: name, Pid: pid}
}

// stackEnv is one stack's settings: the run's, then the variant's on top, then the bench's own.
func stackEnv(mesh string, debug, extra, variant map[string]string) map[string]string {
	env := map[string]string{}
	maps.Copy(env, extra)
	maps.Copy(env, variant)
	env["STACK_MESH"] = mesh
	env["GATEWAY_LIMITS_ORDER_RATE"] = "0" // every bench client orders from 127.0.0.1: no per-client limit
	if a := debug["gateway"]; a != "" {
		env["GATEWAY_DEBUG_ADDR"] = a
	}
	if a := debug["order"]; a != "" {
		env["ORDER_DEBUG_ADDR"] = a
	}
	return env
}

// debugAddrs reserves loopback ports for the services' pprof listeners, or none when not profiling.
func debugAddrs(on bool) map[string]string {
	if !on {
		return nil
	}
	out := map[string]string{}
	for _, svc := range []string{"gateway", "order"} {
		port, err := testkit.Port()
		if err != nil {
			continue
		}
		out[svc] = "127.0.0.1:" + strconv.Itoa(port)
	}
	return out
}

func saveProfile(ctx context.Context, addr string, seconds int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ceilingDB makes a MySQL user with the runtime role's grants (vault/database/order-creation.sql) and opens a
// pool on it with the order service's pool settings, so the ceiling differs from the service only by what
// sits in between.
func ceilingDB(s *stacktest.Stack, pool int) (*sql.DB, error) {
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	pass := hex.EncodeToString(buf)
	if out, err := s.RootSQL("CREATE OR REPLACE USER 'bench_ceiling'@'%' IDENTIFIED BY '" + pass + "';\n" +
		"GRANT SELECT, INSERT, UPDATE ON pizza.* TO 'bench_ceiling'@'%';\n"); err != nil {
		return nil, fmt.Errorf("create the ceiling's MySQL user: %w\n%s", err, out)
	}
	// The order service's defaults (platform/mysqlconn.Config's conf tags), pool size aside.
	cfg := mysqlconn.Config{Addr: fmt.Sprintf("127.0.0.1:%d", s.Ports.MySQL), Name: "pizza", MaxOpen: pool, MaxIdle: pool,
		ConnMaxLifetime: 5 * time.Minute, ConnMaxIdleTime: time.Minute, DialTimeout: 3 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	db, err := mysqlconn.Open(cfg, mysqlconn.Static{Username: "bench_ceiling", Password: pass})
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemBytes, _ = ParseMeminfoTotal(b)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel = ParseCPUModel(b)
	}
	return m
}

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
