package bench

import (
	"strings"
	"testing"
	"time"
)

func measurement(setup string, clients int, throughput float64, p99 time.Duration, rss int64) Measurement {
	wall := 10 * time.Second
	n := int(throughput * wall.Seconds())
	return Measurement{Setup: setup, Clients: clients,
		Summary: Summary{Requests: n, Wall: wall, Throughput: throughput, P50: p99 / 4, P90: p99 / 2, P99: p99, Max: 2 * p99},
		PeakRSS: map[string]int64{"gateway": rss, "order": rss / 2},
		CPU: map[string]time.Duration{"bench": time.Duration(n) * 200 * time.Microsecond,
			"order": time.Duration(n) * 300 * time.Microsecond, "mariadb": time.Duration(n) * 400 * time.Microsecond},
		MachineBusy: 19 * time.Second, // 95% of 2 cores × 10 s
		Syscalls:    map[string]int64{"order": int64(n) * 5},
	}
}

func sampleReport() Report {
	return Report{
		Date: time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC), Machine: Machine{Cores: 2, MemBytes: 24 << 30, CPUModel: "Test CPU"},
		GoVersion: "go1.26.8", DBVersion: "10.11.14-MariaDB", Warmup: 3 * time.Second, Duration: 10 * time.Second,
		Levels: []int{1, 64}, PeakRSSPerMeasure: true,
		Measurements: []Measurement{
			measurement(SetupCeiling, 64, 4000, 20*time.Millisecond, 0),
			measurement(SetupDirect, 64, 2000, 30*time.Millisecond, 30<<20),
			withMemory(measurement(SetupMesh, 64, 1800, 40*time.Millisecond, 45<<20)),
			measurement(SetupMesh, 1, 500, 4*time.Millisecond, 20<<20),
		},
		Rates: []int{100},
		Fixed: []Measurement{fixed(SetupDirect, 100, 8*time.Millisecond, 0), fixed(SetupMesh, 100, 9500*time.Microsecond, 150*time.Millisecond)},
	}
}

// fixed is an open-loop measurement at rate orders/s for 10 s, all answered, sidecarCPU in both sidecars.
func fixed(setup string, rate int, p99, sidecarCPU time.Duration) Measurement {
	m := Measurement{Setup: setup, Clients: OpenLoopStartWorkers, Rate: rate,
		Summary: Summary{Requests: rate * 10, Wall: 10 * time.Second, Throughput: float64(rate), P50: p99 / 4, P90: p99 / 2, P99: p99, Max: p99},
		CPU:     map[string]time.Duration{"gateway": time.Second}}
	if setup == SetupMesh {
		m.CPU["sidecars"] = sidecarCPU
		m.Memory = map[string]Memory{"sidecar-gateway": {Private: 12 << 20}, "sidecar-order": {Private: 16 << 20}}
	}
	return m
}

func withMemory(m Measurement) Measurement {
	m.Memory = map[string]Memory{
		"sidecar-order": {RSS: 96 << 20, PSS: 40 << 20, Private: 17 << 20, Anon: 16 << 20},
		"gateway":       {RSS: 30 << 20, PSS: 24 << 20, Private: 22 << 20, Anon: 20 << 20},
	}
	return m
}

func TestMarkdown(t *testing.T) {
	md := sampleReport().Markdown()
	hasAll(t, md,
		"Run of 2026-11-25 06:00 UTC on 2 cores (Test CPU), 24.0 GiB memory; go1.26.8, MariaDB 10.11.14-MariaDB",
		"| 64 | ceiling | 4000 | 5.0 ms | 10.0 ms | 20.0 ms | 40.0 ms | 0 | – | – | – |",
		"| 64 | mesh | 1800 | 10.0 ms | 20.0 ms | 40.0 ms | 80.0 ms | 0 | 45.0 MB | 22.5 MB | – / – |",
		// mesh/ceiling, direct/ceiling, mesh/direct, cost
		"| 64 | 45% | 50% | 90% | 10% |",
		"| 1 | – | – | – | – |", // only mesh ran at 1 client: no baseline, no ratio
		"| mesh ≥ 70% of the ceiling | 45% | no |",
		"| mesh costs ≤ 10% vs direct | 10% | yes |",
		"| mesh p99 ≤ 1.3× the ceiling's | 2.00× (40.0 ms against 20.0 ms) | no |",
		"| gateway + order CPU per order ≤ MariaDB's | 0.300 ms against 0.400 ms | yes |",
		// fixed rate: latency added, and 0.15 s of sidecar CPU in 10 s = 0.015 cores at 100/s = 0.15 per 1,000/s
		"| 100 | direct | 100 | 2.0 ms | 4.0 ms | 8.0 ms | 8.0 ms | 0 |",
		"| 100 | +0.38 ms | +0.75 ms | +1.50 ms | 0.15 | 0.07 | 12.0 MB / 16.0 MB |",
		"| sidecars add ≤ 1.0 ms at p99 at 100 orders/s | +1.50 ms | no |",
		"| sidecar-gateway ≤ 15.0 MB private memory | 12.0 MB | yes |",
		"| sidecar-order ≤ 15.0 MB private memory | 16.0 MB | no |",
		"| 64 | mesh | 0.200 | – | 0.300 | – | 0.400 | – | 0.900 | 0.156 | 95% |", // (19 s busy − 16.2 s ours) / 18000 orders
		"- **mesh**: CPU. The box is 95% busy; per order: mariadb 0.400, order 0.300, bench 0.200 ms (of 0.900 ms in all).",
		// 2 cores × 0.85 / ((19 s busy − 3.6 s bench) / 18000 orders)
		"the same CPU would carry about 1987 orders/s.",
		"mean latency is clients ÷ throughput = 35.6 ms: at this load latency follows throughput",
		"VmHWM during that measurement",
		"Memory of each process at the end of the 64-client measurement",
		"| mesh | gateway | 45.0 MB | 30.0 MB | 24.0 MB | 22.0 MB | 20.0 MB |",
		"| mesh | sidecar-order | – | 96.0 MB | 40.0 MB | 17.0 MB | 16.0 MB |",
		"Read and write system calls per order (syscr + syscw from /proc/<pid>/io):",
		"| 64 | mesh | – | 5.0 | – |",
		// 19 s busy / 18000 mesh orders, / 40000 ceiling orders; 0.475 / 0.7
		"- **mesh at 45% of the ceiling** (target 70%): the box spends 1.056 ms of CPU per mesh order against 0.475 ms per ceiling order, so on the same saturated cores the mesh reaches about 45% of the ceiling. 70% needs a mesh order to cost at most 0.679 ms of CPU in all, 36% less.",
		"- **mesh p99 2.00× the ceiling's** (target 1.3×): 64 clients each wait for their answer, so latency follows throughput (mean = clients ÷ throughput: 16.0 ms for the ceiling, 35.6 ms for the mesh); within 1.3× needs the mesh's throughput within about 77% of the ceiling's; it reached 45%.",
	)
}

// The targets a run meets get no line under "Targets missed"; the cost against direct and the services' CPU
// against MariaDB's get theirs when missed.
func TestMarkdownMissed(t *testing.T) {
	r := sampleReport()
	md := r.Markdown()
	for _, unwanted := range []string{"**mesh costs", "**gateway + order"} {
		if strings.Contains(md, unwanted) {
			t.Errorf("markdown explains a target that was met (%q)\n%s", unwanted, md)
		}
	}
	mesh := &r.Measurements[2]
	mesh.Summary.Throughput, mesh.Summary.Requests = 1500, 15000
	mesh.CPU["sidecars"] = 3 * time.Second
	mesh.CPU["gateway"] = 4 * time.Second // with order's 5.4 s: 0.627 ms against MariaDB's 7.2 s, 0.480 ms
	md = r.Markdown()
	hasAll(t, md,
		// 19 s / 15000 = 1.267 ms against direct's 19 s / 20000 = 0.950 ms; sidecars 3 s / 15000
		"- **mesh costs 25% against direct** (target 10%): a mesh order costs the box 1.267 ms of CPU, a direct one 0.950 ms; the two sidecars' own processes take 0.200 ms of it (16% of a mesh order)",
		"- **gateway + order 0.627 ms of CPU per order against MariaDB's 0.480 ms**: the two services would have to shed 23% of their CPU.",
	)
}

func TestMarkdownWaiting(t *testing.T) {
	r := sampleReport()
	r.Measurements[0].MachineBusy = 4 * time.Second // 20% of the box: not CPU-bound
	md := r.Markdown()
	// 64 clients at p50 5 ms
	want := "- **ceiling**: waiting, not CPU (box 20% busy). 64 clients at p50 5.0 ms give at most 12800 orders/s"
	hasAll(t, md, want)
}

func TestMarkdownDisturbed(t *testing.T) {
	r := sampleReport()
	r.Measurements[1].MachineBusy = 60 * time.Second // far more than the stack's own 18 s
	md := r.Markdown()
	want := "- **direct**: disturbed. 2.100 ms/order of the box's CPU went to work outside the stack's processes (against 0.900 ms/order inside)"
	hasAll(t, md, want)
}

func TestErrorsCell(t *testing.T) {
	s := Summary{Errors: 5, ErrorKinds: map[string]int{"503 Service Unavailable": 4, "a|b": 1}}
	if got := errorsCell(s); got != "5 (503 Service Unavailable)" {
		t.Errorf("errorsCell = %q", got)
	}
	s = Summary{Errors: 1, ErrorKinds: map[string]int{"a|b": 1}}
	if got := errorsCell(s); got != "1 (a/b)" { // a pipe would break the table
		t.Errorf("errorsCell = %q", got)
	}
}

func TestBroken(t *testing.T) {
	working := sampleReport()
	partly := sampleReport()
	partly.Measurements[2].Summary.Errors = partly.Measurements[2].Summary.Requests - 1
	dead := sampleReport()
	dead.Measurements[2].Summary = Summary{Requests: 7, Errors: 7, ErrorKinds: map[string]int{"503 Service Unavailable": 7}}
	silent := sampleReport()
	silent.Measurements[0].Summary = Summary{}
	for _, tc := range []struct {
		name string
		r    Report
		want string // "" for not broken
	}{
		{"every setup answers", working, ""},
		{"a setup fails all orders but one", partly, ""},
		{"a setup fails every order", dead, "mesh at 64 clients: no order succeeded (7 requests; 503 Service Unavailable)"},
		{"a setup got no request", silent, "ceiling at 64 clients: no order succeeded (0 requests; no request was sent)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Broken()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Broken() = %v; want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Broken() = %v; want %q", err, tc.want)
			}
		})
	}
}

// A variant of the mesh is a row of its own in every table and is set against the mesh of its level.
func TestMarkdownVariants(t *testing.T) {
	r := sampleReport()
	r.Variants = []Variant{{Name: "untraced", Env: map[string]string{"STACK_TRACES": "0", "A": "1"}}}
	v := withMemory(measurement("mesh untraced", 64, 2000, 30*time.Millisecond, 40<<20))
	v.CPU["order"] = time.Duration(v.Summary.Requests) * 240 * time.Microsecond // 20% less per order than the mesh
	r.Measurements = append(r.Measurements, v)
	md := r.Markdown()
	hasAll(t, md,
		"| 64 | mesh untraced | 2000 | 7.5 ms | 15.0 ms | 30.0 ms | 60.0 ms | 0 | 40.0 MB | 20.0 MB | – / – |",
		// orders/s +11% (2000 vs 1800), p99 −25%, gateway + order 0.240 vs 0.300 ms: −20%, mariadb the same
		"| 64 | mesh untraced | A=1 STACK_TRACES=0 | 2000 | +11% | 7.5 ms | 30.0 ms | -25% | 0.240 | -20% | 0.400 | +0% |",
		"| 64 | mesh untraced | 0.200 | – | 0.240 | – | 0.400 |",
		"| mesh untraced | sidecar-order | – | 96.0 MB | 40.0 MB | 17.0 MB | 16.0 MB |", // a variant's sidecars only
	)
	if strings.Contains(md, "| mesh untraced | gateway |") {
		t.Errorf("the memory table shows a variant's gateway:\n%s", md)
	}
	if strings.Contains(md, "| 1 | mesh untraced |") {
		t.Errorf("a row for a level the variant did not run at:\n%s", md)
	}
}

// hasAll fails the test for each of wants that md does not hold.
func hasAll(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
}
