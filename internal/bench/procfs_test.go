package bench

import (
	"os"
	"testing"
	"time"
)

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\tgateway\nVmPeak:\t 1262588 kB\nVmHWM:\t   23456 kB\nVmRSS:\t   20000 kB\nThreads:\t9\n")
	tests := []struct {
		name, field string
		want        int64
		wantErr     bool
	}{
		{"peak rss", "VmHWM", 23456 << 10, false},
		{"current rss", "VmRSS", 20000 << 10, false},
		{"missing field", "VmSwap", 0, true},
		{"no unit", "Threads", 0, true},
		{"prefix is not the field", "Vm", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StatusKB(status, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("StatusKB(%s) = %d, %v; want %d, error %v", tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "1234 (order) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0", 3 * time.Second, false},
		// A name with spaces and a ')' must not shift the fields.
		{"odd name", "77 (a b) c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 0 0", 100 * time.Millisecond, false},
		{"truncated", "77 (x) R 1 2 3", 0, true},
		{"no name", "77 x R", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1 0 0 20 0 1 0 5 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("StatCPU = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := ParseMachineCPU([]byte("cpu  100 5 20 1000 30 1 2 3 40 0\ncpu0 50 2 10 500 15 0 1 1 20 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := MachineCPU{Busy: 131 * clockTick, Total: 1161 * clockTick}
	if got != want {
		t.Errorf("ParseMachineCPU = %+v, want %+v", got, want)
	}
	if _, err := ParseMachineCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("no cpu line: want an error")
	}
}

func TestMachineInfo(t *testing.T) {
	mem, err := ParseMeminfoTotal([]byte("MemTotal:       24683876 kB\nMemFree:        19500000 kB\n"))
	if err != nil || mem != 24683876<<10 {
		t.Errorf("ParseMeminfoTotal = %d, %v", mem, err)
	}
	if got := ParseCPUModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")); got != "AMD EPYC 7B13" {
		t.Errorf("ParseCPUModel = %q", got)
	}
	if got := ParseCPUModel([]byte("processor\t: 0\n")); got != "" {
		t.Errorf("ParseCPUModel without a model = %q, want empty", got)
	}
}

// The live /proc readers work on this process (Linux only, like the bench).
func TestProcessSelf(t *testing.T) {
	p := Process{Name: "self", Pid: osPid()}
	if rss, err := p.PeakRSS(); err != nil || rss <= 0 {
		t.Errorf("PeakRSS = %d, %v", rss, err)
	}
	if _, err := p.CPUTime(); err != nil {
		t.Errorf("CPUTime: %v", err)
	}
	if _, err := (Process{Pid: -1}).PeakRSS(); err == nil {
		t.Error("PeakRSS of no process: want an error")
	}
}

func TestParseLoadAverage(t *testing.T) {
	tests := []struct {
		name, in string
		want     float64
		wantErr  bool
	}{
		{"busy", "7.71 2.56 0.90 3/412 12345\n", 7.71, false},
		{"idle", "0.00 0.01 0.05 1/80 99\n", 0, false},
		{"empty", "", 0, true},
		{"not a number", "x 1 2 1/1 1\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLoadAverage([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseLoadAverage(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseSmapsRollup(t *testing.T) {
	// A sidecar's rollup: most of its RSS is the consul binary's text, mapped by other processes too.
	rollup := []byte("55d0c0a00000-7ffd1e3fe000 ---p 00000000 00:00 0                          [rollup]\n" +
		"Rss:               98304 kB\nPss:               40960 kB\nPss_Anon:          16384 kB\n" +
		"Shared_Clean:      80896 kB\nShared_Dirty:          0 kB\nPrivate_Clean:       1024 kB\n" +
		"Private_Dirty:     16384 kB\nAnonymous:         16384 kB\nSwap:                  0 kB\n")
	got, err := ParseSmapsRollup(rollup)
	want := Memory{RSS: 96 << 20, PSS: 40 << 20, Private: 17 << 20, Anon: 16 << 20}
	if err != nil || got != want {
		t.Fatalf("ParseSmapsRollup = %+v, %v; want %+v", got, err, want)
	}
	if _, err := ParseSmapsRollup([]byte("Rss: 1 kB\nPss: 1 kB\n")); err == nil {
		t.Error("a rollup without Private_Clean parsed")
	}
}

func TestMemoryOfThisProcess(t *testing.T) {
	m, err := Process{Name: "test", Pid: os.Getpid()}.Memory()
	if err != nil {
		t.Fatal(err)
	}
	// A Go test binary holds some private anonymous memory, and no process has more PSS or private memory than RSS.
	if m.Private <= 0 || m.Anon <= 0 || m.PSS > m.RSS || m.Private > m.RSS {
		t.Errorf("own memory %+v", m)
	}
}

func TestParseIOSyscalls(t *testing.T) {
	io := []byte("rchar: 3210\nwchar: 1234\nsyscr: 17\nsyscw: 25\nread_bytes: 0\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n")
	if n, err := ParseIOSyscalls(io); err != nil || n != 42 {
		t.Fatalf("ParseIOSyscalls = %d, %v; want 42", n, err)
	}
	for _, bad := range []string{"rchar: 1\nsyscr: 3\n", "syscr: x\nsyscw: 1\n", ""} {
		if _, err := ParseIOSyscalls([]byte(bad)); err == nil {
			t.Errorf("ParseIOSyscalls(%q) read no error", bad)
		}
	}
}

// This process's own count grows by at least the writes it makes.
func TestSyscallsOfThisProcess(t *testing.T) {
	self := Process{Name: "test", Pid: os.Getpid()}
	before, err := self.Syscalls()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(t.TempDir() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 10 {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	after, err := self.Syscalls()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 10 {
		t.Fatalf("10 writes counted as %d system calls", after-before)
	}
}
