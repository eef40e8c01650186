package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The bench end to end at one level for a few seconds, so it cannot break unseen: Run starts its stacks two at
// a time (direct and mesh, the path that once failed on a shared port, then one variant of the mesh, as
// `make bench` runs its variants), loads the ceiling, direct, mesh and variant setups, stops the stacks and
// renders the report; then direct and mesh at a low fixed rate (open loop). Speed is never asserted; one
// client's orders, and a few a second, must all succeed on every setup, since a failed order at that load is a
// defect, not a number.
func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	opts := Options{Levels: []int{1}, Warmup: time.Second, Duration: 2 * time.Second, CeilingPool: 4,
		StackEnv: map[string]string{}, Log: t.Output(),
		Variants: []Variant{{Name: "untraced", Env: map[string]string{"STACK_TRACES": "0"}}}, Rates: []int{20}}
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	if err := rep.Broken(); err != nil {
		t.Fatal(err)
	}
	variant := opts.Variants[0].Setup()
	for _, setup := range []string{SetupCeiling, SetupDirect, SetupMesh, variant} {
		m, ok := rep.find(setup, 1)
		if !allSucceeded(t, setup+" at 1 client", m, ok) {
			continue
		}
		watched := map[string][]string{SetupCeiling: {"mariadb"}, SetupDirect: {"gateway", "order", "mariadb"},
			SetupMesh: {"gateway", "order", "sidecars", "mariadb"}, variant: {"gateway", "order", "sidecars", "mariadb"}}[setup]
		for _, comp := range watched {
			if m.CPU[comp] == 0 {
				t.Errorf("%s: no CPU time read for %s (%v): the bench watches the wrong processes", setup, comp, m.CPU)
			}
			if comp != "mariadb" && m.Syscalls[comp] <= 0 {
				t.Errorf("%s: no system calls read for %s (%v)", setup, comp, m.Syscalls)
			}
		}
	}
	if len(rep.Measurements) != 4 {
		t.Errorf("%d measurements; want 4 (one setup each at one level)", len(rep.Measurements))
	}
	for _, setup := range []string{SetupDirect, SetupMesh} {
		m, ok := rep.findRate(setup, 20)
		allSucceeded(t, setup+" at 20 orders/s", m, ok)
	}
	if m, ok := rep.findRate(SetupMesh, 20); ok {
		for _, p := range []string{"gateway", "order", "sidecar-gateway", "sidecar-order", "mariadb", "consul", "vault"} {
			if v := m.Memory[p]; v.Private <= 0 || v.PSS <= 0 {
				t.Errorf("mesh: no memory read for %s (%+v): the bench watches the wrong processes", p, v)
			}
		}
		if m.CPU["sidecars"] == 0 {
			t.Error("mesh at 20 orders/s: no sidecar CPU read")
		}
	}
	md := rep.Markdown()
	for _, row := range []string{"| 1 | ceiling |", "| 1 | direct |", "| 1 | mesh |", "| 1 | mesh untraced | STACK_TRACES=0 |",
		"| 20 | direct |", "| 20 | mesh |", "What the two sidecars add"} {
		if !strings.Contains(md, row) {
			t.Errorf("the report has no row %q:\n%s", row, md)
		}
	}
}

// allSucceeded reports whether a measurement was taken and sent some orders, none of them failed.
func allSucceeded(t *testing.T, what string, m Measurement, measured bool) bool {
	t.Helper()
	if !measured {
		t.Errorf("%s: not measured", what)
		return false
	}
	if s := m.Summary; s.Requests == 0 || s.Errors != 0 {
		t.Errorf("%s: %d orders, %d failed (%v); want some, none failed", what, s.Requests, s.Errors, s.ErrorKinds)
	}
	return true
}
