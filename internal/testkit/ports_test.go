package testkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// The child process of the cross-process tests: it reserves what TESTKIT_CHILD asks for from the allocator
// over TESTKIT_CHILD_DIR, prints the outcome as JSON and exits, releasing what it held.
func TestMain(m *testing.M) {
	if req := os.Getenv("TESTKIT_CHILD"); req != "" {
		os.Exit(child(req, os.Getenv("TESTKIT_CHILD_DIR")))
	}
	os.Exit(m.Run())
}

type childAsk struct {
	Range Range
	N     int
}

type childGot struct {
	Base int
	Err  string
	None bool // the error was ErrNoFreePorts
}

func child(req, dir string) int {
	var asks []childAsk
	if err := json.Unmarshal([]byte(req), &asks); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	a := newAllocator(dir)
	var out []childGot
	for _, ask := range asks {
		base, err := a.block(ask.Range, ask.N)
		g := childGot{Base: base}
		if err != nil {
			g.Err, g.None = err.Error(), errors.Is(err, ErrNoFreePorts)
		}
		out = append(out, g)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 2
	}
	return 0
}

// inChild runs the asks in a second process sharing dir's locks.
func inChild(t *testing.T, dir string, asks ...childAsk) []childGot {
	t.Helper()
	req, err := json.Marshal(asks)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TESTKIT_CHILD="+string(req), "TESTKIT_CHILD_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	var got []childGot
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(asks) {
		t.Fatalf("child process printed %q: %v", out, err)
	}
	return got
}

// testRange is a range the tests reserve from (never binding anything): inside StackSidecars, where nothing
// listens unless a test stack's sidecars run, and the bind check skips those.
var testRange = Range{Lo: 23000, Hi: 23400}

func overlap(a, b, n int) bool { return a < b+n && b < a+n }

// The bench starts two stacks at once in one process: however many start together, no two get a common port.
func TestBlocksReservedAtOnceInOneProcessNeverOverlap(t *testing.T) {
	a := newAllocator(t.TempDir())
	const stacks, n = 8, 13
	bases := make([]int, stacks)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range stacks {
		wg.Go(func() {
			<-start
			base, err := a.block(testRange, n)
			if err != nil {
				t.Error(err)
			}
			bases[i] = base
		})
	}
	close(start)
	wg.Wait()
	for i, b := range bases {
		if b < testRange.Lo || b+n > testRange.Hi {
			t.Errorf("block %d starts at %d: outside [%d, %d)", i, b, testRange.Lo, testRange.Hi)
		}
		for j := range i {
			if overlap(b, bases[j], n) {
				t.Errorf("blocks %d (%d…%d) and %d (%d…%d) share ports", j, bases[j], bases[j]+n-1, i, b, b+n-1)
			}
		}
	}
}

// Several `go test` packages, and other people's runs, start stacks at the same time on one machine.
func TestAnotherProcessDoesNotGetAReservedBlock(t *testing.T) {
	dir := t.TempDir()
	a := newAllocator(dir)
	const n = 10
	base, err := a.block(testRange, n)
	if err != nil {
		t.Fatal(err)
	}
	got := inChild(t, dir,
		childAsk{Range: Range{Lo: base, Hi: base + n}, N: n}, // only the reserved block fits: nothing
		childAsk{Range: testRange, N: n},                     // the same ask as ours: another block
	)
	if !got[0].None {
		t.Errorf("the other process got %d…%d, reserved here (err %q); want ErrNoFreePorts", got[0].Base, got[0].Base+n-1, got[0].Err)
	}
	if got[1].Err != "" {
		t.Fatalf("the other process got no block of %d in [%d, %d): %s", n, testRange.Lo, testRange.Hi, got[1].Err)
	}
	if overlap(base, got[1].Base, n) {
		t.Errorf("the other process got %d…%d, overlapping %d…%d reserved here", got[1].Base, got[1].Base+n-1, base, base+n-1)
	}
}

// A reservation lasts as long as its process: once the process ends, however it ends, the ports are free again.
func TestAReservationEndsWithItsProcess(t *testing.T) {
	dir := t.TempDir()
	const n = 5
	first := inChild(t, dir, childAsk{Range: testRange, N: n})[0]
	if first.Err != "" {
		t.Fatal(first.Err)
	}
	a := newAllocator(dir)
	base, err := a.block(Range{Lo: first.Base, Hi: first.Base + n}, n)
	if err != nil || base != first.Base {
		t.Fatalf("after the child ended: block = %d, %v; want %d (its ports released)", base, err, first.Base)
	}
}

// A port some other program listens on, over TCP or UDP, is never handed out.
func TestAPortInUseIsSkipped(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			port := listenOnSomePort(t, network)
			a := newAllocator(t.TempDir())
			if base, err := a.block(Range{Lo: port, Hi: port + 1}, 1); !errors.Is(err, ErrNoFreePorts) {
				t.Errorf("block in [%d, %d) = %d, %v; want ErrNoFreePorts (%s port in use)", port, port+1, base, err, network)
			}
		})
	}
}

// listenOnSomePort listens on a kernel-chosen loopback port until the test ends.
func listenOnSomePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// The process's allocator: a port from Singles, whose lock file in LockDir no one else can take meanwhile.
func TestPortIsReservedInTheSharedLockFolder(t *testing.T) {
	p := FreePort(t)
	if p < Singles.Lo || p >= Singles.Hi {
		t.Errorf("Port() = %d, outside Singles [%d, %d)", p, Singles.Lo, Singles.Hi)
	}
	if q := FreePort(t); q == p {
		t.Errorf("Port() gave %d twice", p)
	}
	f, err := os.Open(filepath.Join(LockDir, strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("flock of port %d's lock file from another open file: %v; want EWOULDBLOCK (held)", p, err)
	}
}

func TestBlockRefusesImpossibleAsks(t *testing.T) {
	a := newAllocator(t.TempDir())
	for _, tc := range []struct {
		name string
		r    Range
		n    int
	}{
		{"zero ports", testRange, 0},
		{"more than the range", Range{Lo: 23000, Hi: 23005}, 6},
		{"past 65535", Range{Lo: 65530, Hi: 65540}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if base, err := a.block(tc.r, tc.n); err == nil {
				t.Errorf("block(%v, %d) = %d; want an error", tc.r, tc.n, base)
			}
		})
	}
}
