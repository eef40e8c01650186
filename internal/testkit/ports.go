// Package testkit is the one set of helpers the tests share: free ports that no other test holds, the
// repository's root, and polling until a condition holds.
package testkit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Port ranges, all below the kernel's ephemeral range (32768–60999): a port from that range can be taken as the
// local port of an outgoing connection (a pooled MySQL connection lives for minutes), and a process a supervisor
// restarts must be able to bind its port again. None holds a default port of the local stack (`make run`:
// 8200–8501, 9090–9464, 13306–13307, Consul's sidecars from 21000).
var (
	// Singles is where Port picks.
	Singles = Range{Lo: 11000, Hi: 13000}
	// StackListeners is where a test stack's consecutive listener ports come from.
	StackListeners = Range{Lo: 14000, Hi: 21000}
	// StackSidecars is where a test stack's sidecar range (Consul allocates from it) comes from.
	StackSidecars = Range{Lo: 22000, Hi: 32000}
)

// Range is the ports lo ≤ p < hi.
type Range struct{ Lo, Hi int }

// LockDir holds one lock file per reserved port, shared by every process on the machine (other test binaries,
// other people's runs). A port is reserved while a process holds the flock of its file; the kernel releases it
// when that process ends, however it ends, so a crashed run never leaks a reservation. It is /tmp, not
// os.TempDir(): ports are the machine's, and two runs with different TMPDIRs must still see each other's locks.
var LockDir = "/tmp/pizzajoint-ports"

// process is the allocator of this process: every caller goes through it, so two stacks started at once in
// one process (the bench) never get the same ports.
var process = newAllocator(LockDir)

// ErrNoFreePorts is returned when a range holds no free block of the size asked for.
var ErrNoFreePorts = errors.New("no free ports")

// Port reserves one free port from Singles for the rest of the process (TCP and UDP both free when picked).
func Port() (int, error) { return process.block(Singles, 1) }

// FreePort is Port that fails the test on an error.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Block reserves n consecutive free ports in r for the rest of the process and returns the first.
//
// Reserved means: no other caller in this process and no other process using testkit holds any of them, and
// nothing listened on them (TCP or UDP, any address) when they were picked. A program that does not use
// testkit can still bind one between the pick and its use; the caller's start then fails loudly.
func Block(r Range, n int) (int, error) { return process.block(r, n) }

// allocator hands out ports: a set for this process, flocked files across processes, and a bind check
// against everything else.
type allocator struct {
	dir string

	mu   sync.Mutex
	held map[int]*os.File // reserved port → its lock file, kept open (and locked) for the life of the process
}

func newAllocator(dir string) *allocator {
	return &allocator{dir: dir, held: map[int]*os.File{}}
}

func (a *allocator) block(r Range, n int) (int, error) {
	if n < 1 || r.Lo < 1 || r.Hi > 65536 || r.Lo+n > r.Hi {
		return 0, fmt.Errorf("testkit: cannot reserve %d ports in [%d, %d)", n, r.Lo, r.Hi)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.makeDir(); err != nil {
		return 0, err
	}
	for base := r.Lo; base+n <= r.Hi; {
		taken, err := a.tryBlock(base, n)
		if err != nil {
			return 0, err
		}
		if taken < 0 {
			return base, nil
		}
		base = taken + 1 // every block that holds the taken port fails too
	}
	return 0, fmt.Errorf("testkit: %w: no block of %d in [%d, %d)", ErrNoFreePorts, n, r.Lo, r.Hi)
}

// tryBlock reserves base…base+n-1, or none of them and returns the first port found taken (-1: all reserved).
func (a *allocator) tryBlock(base, n int) (taken int, err error) {
	var got []int
	release := func() {
		for _, p := range got {
			a.held[p].Close() // closing the file drops its flock
			delete(a.held, p)
		}
	}
	for p := base; p < base+n; p++ {
		if a.held[p] != nil {
			release()
			return p, nil
		}
		f, ok, err := a.lock(p)
		if err != nil {
			release()
			return 0, err
		}
		if !ok {
			release()
			return p, nil
		}
		// Checked after the lock: a port that another process reserved and already bound fails the lock;
		// a port some other program listens on fails here.
		if !bindable(p) {
			f.Close()
			release()
			return p, nil
		}
		a.held[p] = f
		got = append(got, p)
	}
	return -1, nil
}

// lock takes port's lock file without waiting; ok is false when another process (or another open file of
// this one) holds it.
func (a *allocator) lock(port int) (_ *os.File, ok bool, _ error) {
	// Read-only is enough for flock, and lets every account open a file another one created.
	f, err := os.OpenFile(filepath.Join(a.dir, strconv.Itoa(port)), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("testkit: port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("testkit: flock %s: %w", f.Name(), err)
	}
	return f, true, nil
}

// makeDir creates the lock folder writable by every account (sticky, like /tmp): ports are the machine's,
// whoever runs the tests.
func (a *allocator) makeDir() error {
	err := os.Mkdir(a.dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err == nil {
		// Only its creator may (and needs to) widen it; the umask narrowed Mkdir's mode.
		err = os.Chmod(a.dir, 0o777|os.ModeSticky)
	}
	if err != nil {
		return fmt.Errorf("testkit: port locks: %w", err)
	}
	return nil
}

// bindable reports whether nothing listens on port, over TCP or UDP, on any address. The stack binds TCP on
// loopback or every interface, and Consul's gossip also binds UDP.
func bindable(port int) bool {
	addr := ":" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}
