package bench

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Setups, in the order the tables show them.
const (
	SetupCeiling = "ceiling"
	SetupDirect  = "direct"
	SetupMesh    = "mesh"
)

// Measurement is one setup at one concurrency level.
type Measurement struct {
	Setup   string
	Clients int // closed loop: the clients; open loop: the workers it started with
	Rate    int // open loop: the orders a second offered on schedule; 0 for a closed loop
	Summary Summary
	// PeakRSS is each service process's VmHWM during the measurement, in bytes.
	PeakRSS map[string]int64
	// CPU is the CPU time each component used during the measurement (see Components).
	CPU map[string]time.Duration
	// MachineBusy is the whole machine's busy CPU time during the measurement, other processes included.
	MachineBusy time.Duration
	// Memory is each process of the setup's stack as the measurement ended, by process name.
	Memory map[string]Memory
	// Syscalls is the read and write system calls each component made during the measurement (see Components).
	Syscalls map[string]int64
}

// Components of the CPU table, in column order. "bench" is this process: the load generator, and for the
// ceiling also the SQL client.
var Components = []string{"bench", "gateway", "order", "sidecars", "mariadb", "consul+vault"}

// Targets from the design ("Performance expectations"), at TargetClients clients in one run, and at the fixed
// rate TargetRate.
const (
	TargetMeshOfCeiling = 0.70
	TargetMeshCost      = 0.10
	TargetP99OfCeiling  = 1.3 // the mesh's p99 at most this many times the ceiling's
	TargetClients       = 64
	TargetRate          = 100
	TargetSidecarsP99   = time.Millisecond // what both sidecars add to p99 at TargetRate
	TargetSidecarUSS    = 15 << 20         // each sidecar's private memory
)

// Published figures of other meshes at a fixed rate, for the fixed-rate table.
const anchors = "Published figures of other meshes, for scale (their payloads and machines differ): Istio 1.24's " +
	"sidecar takes 0.20 vCPU and 60 MB per sidecar at 1,000 requests/s; Istio 1.20's two proxies add 0.23 ms " +
	"at p90 and 0.30 ms at p99; a Linkerd proxy takes 26 MB."

// Report is a whole `make bench` run.
type Report struct {
	Date              time.Time
	Machine           Machine
	GoVersion         string
	DBVersion         string
	Commit            string
	Warmup, Duration  time.Duration
	Levels            []int
	PeakRSSPerMeasure bool // VmHWM was reset before each measurement (else it is the peak since start)
	Variants          []Variant
	Measurements      []Measurement
	Rates             []int
	Fixed             []Measurement // the open-loop measurements, direct and mesh at each of Rates
}

// setups are the run's setups in table order: ceiling, direct, mesh, then the mesh's variants.
func (r Report) setups() []string {
	out := []string{SetupCeiling, SetupDirect, SetupMesh}
	for _, v := range r.Variants {
		out = append(out, v.Setup())
	}
	return out
}

// Broken names every measurement in which no order succeeded: a setup that answers nothing is broken, whatever
// its numbers. A slow setup, or one that fails some orders, is reported in the tables, never failed.
func (r Report) Broken() error {
	var errs []error
	for _, m := range r.Measurements {
		if m.Summary.Requests > m.Summary.Errors {
			continue
		}
		kinds := slices.Sorted(maps.Keys(m.Summary.ErrorKinds))
		errs = append(errs, fmt.Errorf("%s at %d clients: no order succeeded (%d requests; %s)", m.Setup, m.Clients,
			m.Summary.Requests, cmp.Or(strings.Join(kinds, "; "), "no request was sent")))
	}
	return errors.Join(errs...)
}

func (r Report) findRate(setup string, rate int) (Measurement, bool) {
	for _, m := range r.Fixed {
		if m.Setup == setup && m.Rate == rate {
			return m, true
		}
	}
	return Measurement{}, false
}

func (r Report) find(setup string, clients int) (Measurement, bool) {
	for _, m := range r.Measurements {
		if m.Setup == setup && m.Clients == clients {
			return m, true
		}
	}
	return Measurement{}, false
}

// Markdown renders the run: the results table, the ratios, the targets, CPU per order and what limits each
// setup. Numbers only; the verdicts never fail the run.
func (r Report) Markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Run of %s on %d cores", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine.Cores)
	if r.Machine.CPUModel != "" {
		w(" (%s)", r.Machine.CPUModel)
	}
	w(", %.1f GiB memory; %s, MariaDB %s", float64(r.Machine.MemBytes)/(1<<30), r.GoVersion, cmp.Or(r.DBVersion, "?"))
	if r.Commit != "" {
		w(", commit %s", r.Commit)
	}
	w(". Each cell: %s warm-up, then %s measured with a fixed number of clients, each sending its next order "+
		"as soon as the last is answered. The setups take turns at each level (the first one rotates), so "+
		"drift hits all of them alike.\n\n", r.Warmup, r.Duration)

	w("| clients | setup | orders/s | p50 | p90 | p99 | max | errors | peak RSS gateway | order | sidecars (gw / order) |\n")
	w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range r.Levels {
		for _, setup := range r.setups() {
			m, ok := r.find(setup, c)
			if !ok {
				continue
			}
			s := m.Summary
			sidecars := "–"
			if strings.HasPrefix(setup, SetupMesh) {
				sidecars = mb(m.PeakRSS["sidecar-gateway"]) + " / " + mb(m.PeakRSS["sidecar-order"])
			}
			w("| %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, setup, s.Throughput, ms(s.P50),
				ms(s.P90), ms(s.P99), ms(s.Max), errorsCell(s), mb(m.PeakRSS["gateway"]), mb(m.PeakRSS["order"]), sidecars)
		}
	}
	rssNote := "since the process started (earlier levels included)"
	if r.PeakRSSPerMeasure {
		rssNote = "during that measurement (VmHWM reset before it)"
	}
	w("\nLatency is per successful order, as the client sees it. Peak RSS is VmHWM %s.\n\n", rssNote)

	w("Throughput ratios:\n\n| clients | mesh / ceiling | direct / ceiling | mesh / direct | mesh cost vs direct |\n")
	w("| ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range r.Levels {
		ceil, _ := r.find(SetupCeiling, c)
		dir, _ := r.find(SetupDirect, c)
		mesh, _ := r.find(SetupMesh, c)
		md, ok := Ratio(mesh.Summary.Throughput, dir.Summary.Throughput)
		cost := "–"
		if ok {
			cost = fmt.Sprintf("%.0f%%", (1-md)*100)
		}
		w("| %d | %s | %s | %s | %s |\n", c, pct(mesh.Summary.Throughput, ceil.Summary.Throughput),
			pct(dir.Summary.Throughput, ceil.Summary.Throughput), pct(mesh.Summary.Throughput, dir.Summary.Throughput), cost)
	}

	r.variants(w)
	r.fixedRate(w)
	r.targets(w)
	r.cpuTable(w)
	r.syscallTable(w)
	r.memoryTable(w)
	r.limits(w)
	r.missed(w)
	return b.String()
}

// variants sets each variant of the mesh beside the mesh measured in the same rotation: what the setting
// costs in throughput, latency and CPU per order.
func (r Report) variants(w func(string, ...any)) {
	if len(r.Variants) == 0 {
		return
	}
	w("\nVariants of the mesh, against the mesh at the same level (+ is more than the mesh):\n\n")
	w("| clients | setup | settings | orders/s | vs mesh | p50 | p99 | p99 vs mesh | gateway + order CPU/order | vs mesh | mariadb CPU/order | vs mesh |\n")
	w("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range r.Levels {
		mesh, ok := r.find(SetupMesh, c)
		if !ok {
			continue
		}
		for _, v := range r.Variants {
			m, ok := r.find(v.Setup(), c)
			if !ok {
				continue
			}
			keys := slices.Sorted(maps.Keys(v.Env))
			settings := make([]string, 0, len(keys))
			for _, k := range keys {
				settings = append(settings, k+"="+v.Env[k])
			}
			services := func(m Measurement) float64 { return cpuPerOrder(m.CPU["gateway"]+m.CPU["order"], m) }
			db := func(m Measurement) float64 { return cpuPerOrder(m.CPU["mariadb"], m) }
			w("| %d | %s | %s | %.0f | %s | %s | %s | %s | %.3f | %s | %.3f | %s |\n", c, v.Setup(), strings.Join(settings, " "),
				m.Summary.Throughput, relChange(m.Summary.Throughput, mesh.Summary.Throughput), ms(m.Summary.P50), ms(m.Summary.P99),
				relChange(float64(m.Summary.P99), float64(mesh.Summary.P99)), services(m), relChange(services(m), services(mesh)),
				db(m), relChange(db(m), db(mesh)))
		}
	}
}

// relChange is a relative to b as a signed percentage, "–" when b is nothing.
func relChange(a, b float64) string {
	r, ok := Ratio(a, b)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%+.0f%%", (r-1)*100)
}

// succeeded is the orders of the measurement that succeeded: what every per-order figure is divided by.
func (m Measurement) succeeded() int { return m.Summary.Requests - m.Summary.Errors }

// cpuPerOrder is d per successful order in milliseconds, 0 when none succeeded.
func cpuPerOrder(d time.Duration, m Measurement) float64 {
	ok := m.succeeded()
	if ok <= 0 {
		return 0
	}
	return d.Seconds() * 1000 / float64(ok)
}

// fixedRate shows direct and mesh at each fixed rate, then what the two sidecars add: latency at p50, p90
// and p99, CPU per 1,000 orders/s, private memory.
func (r Report) fixedRate(w func(string, ...any)) {
	if len(r.Fixed) == 0 {
		return
	}
	w("\nFixed rate (open loop): each setup offered the rate for %s after %s of warm-up, on schedule whatever "+
		"the answers (vegeta's constant pacer, the way wrk2 and fortio measure meshes); latency from each "+
		"request's send.\n\n", r.Duration, r.Warmup)
	w("| orders/s offered | setup | answered/s | p50 | p90 | p99 | max | errors |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, rate := range r.Rates {
		for _, setup := range []string{SetupDirect, SetupMesh} {
			if m, ok := r.findRate(setup, rate); ok {
				s := m.Summary
				w("| %d | %s | %.0f | %s | %s | %s | %s | %s |\n", rate, setup, s.Throughput, ms(s.P50), ms(s.P90),
					ms(s.P99), ms(s.Max), errorsCell(s))
			}
		}
	}
	w("\nWhat the two sidecars add (mesh − direct at the same rate; CPU is both sidecars' user + system time):\n\n")
	w("| orders/s | p50 | p90 | p99 | sidecars' vCPU per 1,000 orders/s | per sidecar | private memory gateway's / order's sidecar |\n")
	w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, rate := range r.Rates {
		dir, ok1 := r.findRate(SetupDirect, rate)
		mesh, ok2 := r.findRate(SetupMesh, rate)
		if !ok1 || !ok2 {
			continue
		}
		vcpu := sidecarVCPUPer1000(mesh)
		w("| %d | %s | %s | %s | %.2f | %.2f | %s / %s |\n", rate, msDelta(mesh.Summary.P50-dir.Summary.P50),
			msDelta(mesh.Summary.P90-dir.Summary.P90), msDelta(mesh.Summary.P99-dir.Summary.P99), vcpu, vcpu/2,
			mb(mesh.Memory["sidecar-gateway"].Private), mb(mesh.Memory["sidecar-order"].Private))
	}
	w("\n%s\n", anchors)
}

// sidecarVCPUPer1000 is the sidecars' CPU in cores, per 1,000 orders a second answered.
func sidecarVCPUPer1000(m Measurement) float64 {
	if m.Summary.Wall <= 0 || m.Summary.Throughput <= 0 {
		return 0
	}
	cores := m.CPU["sidecars"].Seconds() / m.Summary.Wall.Seconds()
	return cores / (m.Summary.Throughput / 1000)
}

func msDelta(d time.Duration) string {
	return fmt.Sprintf("%+.2f ms", float64(d)/float64(time.Millisecond))
}

// atTargetLevel is the ceiling, direct and mesh at TargetClients; ok is false unless all three were measured.
func (r Report) atTargetLevel() (ceil, dir, mesh Measurement, ok bool) {
	ceil, ok1 := r.find(SetupCeiling, TargetClients)
	dir, ok2 := r.find(SetupDirect, TargetClients)
	mesh, ok3 := r.find(SetupMesh, TargetClients)
	return ceil, dir, mesh, ok1 && ok2 && ok3
}

func (r Report) targets(w func(string, ...any)) {
	c := TargetClients
	ceil, dir, mesh, ok := r.atTargetLevel()
	if !ok {
		return
	}
	w("\nTargets (the design's performance expectations) at %d clients, and at %d orders/s:\n\n"+
		"| target | measured | met |\n| --- | ---: | :---: |\n", c, TargetRate)
	mc, _ := Ratio(mesh.Summary.Throughput, ceil.Summary.Throughput)
	w("| mesh ≥ %.0f%% of the ceiling | %.0f%% | %s |\n", TargetMeshOfCeiling*100, mc*100, yes(mc >= TargetMeshOfCeiling))
	md, _ := Ratio(mesh.Summary.Throughput, dir.Summary.Throughput)
	w("| mesh costs ≤ %.0f%% vs direct | %.0f%% | %s |\n", TargetMeshCost*100, (1-md)*100, yes(1-md <= TargetMeshCost))
	pr, ok := Ratio(float64(mesh.Summary.P99), float64(ceil.Summary.P99))
	w("| mesh p99 ≤ %.1f× the ceiling's | %.2f× (%s against %s) | %s |\n", TargetP99OfCeiling, pr,
		ms(mesh.Summary.P99), ms(ceil.Summary.P99), yes(ok && pr <= TargetP99OfCeiling))
	services, db := cpuPerOrder(mesh.CPU["gateway"]+mesh.CPU["order"], mesh), cpuPerOrder(mesh.CPU["mariadb"], mesh)
	w("| gateway + order CPU per order ≤ MariaDB's | %.3f ms against %.3f ms | %s |\n", services, db, yes(services <= db))
	fd, ok1 := r.findRate(SetupDirect, TargetRate)
	fm, ok2 := r.findRate(SetupMesh, TargetRate)
	if !ok1 || !ok2 {
		return
	}
	added := fm.Summary.P99 - fd.Summary.P99
	w("| sidecars add ≤ %s at p99 at %d orders/s | %s | %s |\n", ms(TargetSidecarsP99), TargetRate, msDelta(added),
		yes(added <= TargetSidecarsP99))
	for _, sc := range []string{"sidecar-gateway", "sidecar-order"} {
		if v, ok := fm.Memory[sc]; ok {
			w("| %s ≤ %s private memory | %s | %s |\n", sc, mb(TargetSidecarUSS), mb(v.Private), yes(v.Private <= TargetSidecarUSS))
		}
	}
}

func (r Report) cpuTable(w func(string, ...any)) {
	w("\nCPU time per order, in ms (user + system, from /proc; the load generator runs on the same cores):\n\n")
	w("| clients | setup | %s | total | kernel & other | machine busy |\n", strings.Join(Components, " | "))
	w("| ---: | --- |%s ---: | ---: | ---: |\n", strings.Repeat(" ---: |", len(Components)))
	for _, c := range r.Levels {
		for _, setup := range r.setups() {
			m, ok := r.find(setup, c)
			if !ok {
				continue
			}
			w("| %d | %s |", c, setup)
			for _, comp := range Components {
				if d, ok := m.CPU[comp]; ok {
					w(" %s |", perOrder(d, m))
				} else {
					w(" – |") // not part of this setup
				}
			}
			w(" %s | %s | %.0f%% |\n", perOrder(sum(m.CPU), m), perOrder(max(0, m.MachineBusy-sum(m.CPU)), m),
				100*m.busyShare(r.Machine.Cores))
		}
	}
	w("\nMachine busy is the whole box's busy CPU as a share of %d cores × wall time. Kernel & other is the part "+
		"of it no process above was charged for: loopback networking in softirq, the filesystem journal that "+
		"commits' fsyncs wait on, the idle second stack, anything else running on the box.\n", r.Machine.Cores)
}

// syscallTable shows the services' and sidecars' read and write system calls per order: each is a trip into
// the kernel, and through the mesh every segment one side writes, both sidecars read and write again.
func (r Report) syscallTable(w func(string, ...any)) {
	comps := []string{"gateway", "order", "sidecars"}
	rows := 0
	for _, c := range r.Levels {
		for _, setup := range r.setups() {
			m, ok := r.find(setup, c)
			if !ok || len(m.Syscalls) == 0 || setup == SetupCeiling {
				continue
			}
			if rows == 0 {
				w("\nRead and write system calls per order (syscr + syscw from /proc/<pid>/io):\n\n")
				w("| clients | setup | %s |\n| ---: | --- |%s\n", strings.Join(comps, " | "), strings.Repeat(" ---: |", len(comps)))
			}
			rows++
			w("| %d | %s |", c, setup)
			for _, comp := range comps {
				n, ok := m.Syscalls[comp]
				if done := m.succeeded(); ok && done > 0 {
					w(" %.1f |", float64(n)/float64(done))
				} else {
					w(" – |")
				}
			}
			w("\n")
		}
	}
}

// memoryTable shows every process of the direct and mesh stacks four ways, at the run's highest level.
func (r Report) memoryTable(w func(string, ...any)) {
	if len(r.Levels) == 0 {
		return
	}
	c := slices.Max(r.Levels)
	var rows []Measurement
	// Direct and the mesh with every process; the variants with their sidecars, which a setting may change.
	for _, setup := range r.setups() {
		if m, ok := r.find(setup, c); ok && len(m.Memory) > 0 && setup != SetupCeiling {
			rows = append(rows, m)
		}
	}
	if len(rows) == 0 {
		return
	}
	w("\nMemory of each process at the end of the %d-client measurement (from /proc/<pid>/smaps_rollup; VmHWM is "+
		"the peak during it, for the processes it is tracked for):\n\n", c)
	w("| setup | process | VmHWM | RSS | PSS | private (USS) | anonymous |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, m := range rows {
		for _, name := range slices.Sorted(maps.Keys(m.Memory)) {
			if m.Setup != SetupDirect && m.Setup != SetupMesh && !strings.HasPrefix(name, "sidecar-") {
				continue
			}
			v := m.Memory[name]
			w("| %s | %s | %s | %s | %s | %s | %s |\n", m.Setup, name, mb(m.PeakRSS[name]), mb(v.RSS), mb(v.PSS), mb(v.Private), mb(v.Anon))
		}
	}
	w("\nRSS counts shared pages in full in every process that maps them: a sidecar is the consul binary, whose " +
		"text the agent and the other sidecar map too. A sidecar's own cost, what one more of them takes from the " +
		"machine, is its private memory (USS); PSS shares the common pages out among the processes that map them.\n")
}

// busyShare is the machine's busy CPU as a share of all its cores during the measurement.
func (m Measurement) busyShare(cores int) float64 {
	if m.Summary.Wall <= 0 || cores <= 0 {
		return 0
	}
	return m.MachineBusy.Seconds() / (m.Summary.Wall.Seconds() * float64(cores))
}

// CPUBound is the busy share above which a setup counts as limited by the CPU rather than by waiting.
const CPUBound = 0.85

// limits says, from the numbers, what holds each setup back at the design's reference level.
func (r Report) limits(w func(string, ...any)) {
	c := TargetClients
	w("\nWhat limits each setup at %d clients (derived from the numbers above):\n\n", c)
	for _, setup := range []string{SetupCeiling, SetupDirect, SetupMesh} {
		m, ok := r.find(setup, c)
		if !ok || m.Summary.Throughput == 0 {
			continue
		}
		share := m.busyShare(r.Machine.Cores)
		top := topComponents(m.CPU, 3)
		parts := make([]string, 0, len(top))
		for _, comp := range top {
			parts = append(parts, fmt.Sprintf("%s %s", comp, perOrder(m.CPU[comp], m)))
		}
		total := sum(m.CPU)
		if other := m.MachineBusy - total; other > total/2 {
			// The box is shared (other processes, the hypervisor's steal): say so rather than blame the setup.
			w("- **%s**: disturbed. %s ms/order of the box's CPU went to work outside the stack's processes "+
				"(against %s ms/order inside), so this cell understates the setup; rerun on a quiet machine.\n",
				setup, perOrder(other, m), perOrder(total, m))
			continue
		}
		if share >= CPUBound {
			w("- **%s**: CPU. The box is %.0f%% busy; per order: %s ms (of %s ms in all).", setup, share*100,
				strings.Join(parts, ", "), perOrder(total, m))
			if own := max(m.MachineBusy, total) - m.CPU["bench"]; own > 0 && m.CPU["bench"] > 0 {
				// What the same cores could carry if the load generator ran elsewhere.
				perOrderOwn := own.Seconds() / float64(m.succeeded())
				w(" Without the load generator (%s ms/order) on these cores, the same CPU would carry about %.0f orders/s.",
					perOrder(m.CPU["bench"], m), float64(r.Machine.Cores)*CPUBound/perOrderOwn)
			}
			w(" %s\n", littlesLaw(c, m))
			continue
		}
		w("- **%s**: waiting, not CPU (box %.0f%% busy). %d clients at p50 %s give at most %.0f orders/s "+
			"(clients ÷ latency); the time goes to round trips and the commit's log flush. Per order: %s ms.\n",
			setup, share*100, c, ms(m.Summary.P50), float64(c)/m.Summary.P50.Seconds(), strings.Join(parts, ", "))
	}
}

// missed says, for each closed-loop target the run missed, what stands in the way, derived from the CPU the box
// spent per order: when every setup is CPU-bound, throughput is the cores' time divided by the CPU an order
// costs in all (the stack's processes, the kernel and the load generator), so ratios of throughput follow
// ratios of that cost.
func (r Report) missed(w func(string, ...any)) {
	c := TargetClients
	ceil, dir, mesh, ok := r.atTargetLevel()
	if !ok {
		return
	}
	perCeil, perDir, perMesh := cpuPerOrder(ceil.MachineBusy, ceil), cpuPerOrder(dir.MachineBusy, dir), cpuPerOrder(mesh.MachineBusy, mesh)
	if perCeil <= 0 || perDir <= 0 || perMesh <= 0 {
		return
	}
	var lines []string
	if mc, ok := Ratio(mesh.Summary.Throughput, ceil.Summary.Throughput); ok && mc < TargetMeshOfCeiling {
		lines = append(lines, fmt.Sprintf("**mesh at %.0f%% of the ceiling** (target %.0f%%): the box spends %.3f ms of CPU "+
			"per mesh order against %.3f ms per ceiling order, so on the same saturated cores the mesh reaches about "+
			"%.0f%% of the ceiling. %.0f%% needs a mesh order to cost at most %.3f ms of CPU in all, %.0f%% less.",
			mc*100, TargetMeshOfCeiling*100, perMesh, perCeil, perCeil/perMesh*100, TargetMeshOfCeiling*100,
			perCeil/TargetMeshOfCeiling, (1-perCeil/TargetMeshOfCeiling/perMesh)*100))
	}
	if md, ok := Ratio(mesh.Summary.Throughput, dir.Summary.Throughput); ok && 1-md > TargetMeshCost {
		sidecars := cpuPerOrder(mesh.CPU["sidecars"], mesh)
		lines = append(lines, fmt.Sprintf("**mesh costs %.0f%% against direct** (target %.0f%%): a mesh order costs the box "+
			"%.3f ms of CPU, a direct one %.3f ms; the two sidecars' own processes take %.3f ms of it (%.0f%% of a mesh "+
			"order), before the kernel's work for the two more loopback hops and the mTLS records. Within %.0f%% needs "+
			"the sidecars' share of an order under %.0f%%.",
			(1-md)*100, TargetMeshCost*100, perMesh, perDir, sidecars, sidecars/perMesh*100, TargetMeshCost*100, TargetMeshCost*100))
	}
	if pr, ok := Ratio(float64(mesh.Summary.P99), float64(ceil.Summary.P99)); ok && pr > TargetP99OfCeiling {
		lines = append(lines, fmt.Sprintf("**mesh p99 %.2f× the ceiling's** (target %.1f×): %d clients each wait for their "+
			"answer, so latency follows throughput (mean = clients ÷ throughput: %s for the ceiling, %s for the mesh); "+
			"within %.1f× needs the mesh's throughput within about %.0f%% of the ceiling's; it reached %.0f%%.",
			pr, TargetP99OfCeiling, c, ms(time.Duration(float64(c)/ceil.Summary.Throughput*float64(time.Second))),
			ms(time.Duration(float64(c)/mesh.Summary.Throughput*float64(time.Second))), TargetP99OfCeiling, 100/TargetP99OfCeiling,
			mesh.Summary.Throughput/ceil.Summary.Throughput*100))
	}
	services, db := cpuPerOrder(mesh.CPU["gateway"]+mesh.CPU["order"], mesh), cpuPerOrder(mesh.CPU["mariadb"], mesh)
	if db > 0 && services > db {
		lines = append(lines, fmt.Sprintf("**gateway + order %.3f ms of CPU per order against MariaDB's %.3f ms**: the two "+
			"services would have to shed %.0f%% of their CPU. `make bench BENCH_FLAGS='-profile DIR'` shows where it goes "+
			"(docs/benchmarks.md, Profiling).", services, db, (1-db/services)*100))
	}
	if len(lines) == 0 {
		return
	}
	w("\nTargets missed at %d clients, and what stands in the way (from the CPU the box spent per order, all of it: the "+
		"stack, the kernel and the load generator):\n\n", c)
	for _, l := range lines {
		w("- %s\n", l)
	}
}

// littlesLaw explains latency in a closed loop: each client waits for its answer, so the mean latency is
// clients ÷ throughput, whatever the hops: at a saturating level latency follows throughput.
func littlesLaw(clients int, m Measurement) string {
	return fmt.Sprintf("With %d clients each waiting for its answer, mean latency is clients ÷ throughput = %s: "+
		"at this load latency follows throughput (the fixed-rate table shows latency at a load the box holds).", clients,
		ms(time.Duration(float64(clients)/m.Summary.Throughput*float64(time.Second))))
}

func topComponents(cpu map[string]time.Duration, n int) []string {
	names := slices.Collect(maps.Keys(cpu))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(cpu[b], cpu[a]), cmp.Compare(a, b)) })
	return names[:min(n, len(names))]
}

func sum(cpu map[string]time.Duration) (t time.Duration) {
	for _, d := range cpu {
		t += d
	}
	return t
}

func perOrder(d time.Duration, m Measurement) string {
	if m.succeeded() <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", cpuPerOrder(d, m))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mb(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
}

func pct(a, b float64) string {
	r, ok := Ratio(a, b)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", r*100)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func errorsCell(s Summary) string {
	if s.Errors == 0 {
		return "0"
	}
	kinds := slices.Collect(maps.Keys(s.ErrorKinds))
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(cmp.Compare(s.ErrorKinds[b], s.ErrorKinds[a]), cmp.Compare(a, b)) })
	k := kinds[0]
	if len(k) > 40 {
		k = k[:40] + "…"
	}
	return fmt.Sprintf("%d (%s)", s.Errors, strings.ReplaceAll(k, "|", "/"))
}
