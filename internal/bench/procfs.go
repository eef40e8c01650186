package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc CPU times. It is 100 on every Linux architecture Go supports for
// this purpose; reading it needs cgo (sysconf), which the bench avoids.
const clockTick = 10 * time.Millisecond

// StatusKB returns a "Name:   123 kB" field of /proc/<pid>/status, in bytes (e.g. VmHWM, the peak RSS).
func StatusKB(status []byte, field string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected value %q", field, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in status", field)
}

// StatCPU returns user+system CPU time from /proc/<pid>/stat. The command name (field 2) may hold spaces
// and parentheses, so fields are counted after its last ')'.
func StatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15), so utime is f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// MachineCPU is the machine-wide CPU time from the first line of /proc/stat.
type MachineCPU struct {
	Busy, Total time.Duration
}

// ParseMachineCPU reads the "cpu ..." line of /proc/stat: idle and iowait count as not busy.
func ParseMachineCPU(procStat []byte) (MachineCPU, error) {
	line, _, _ := bytes.Cut(procStat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return MachineCPU{}, errors.New("/proc/stat: no aggregate cpu line")
	}
	var m MachineCPU
	// user nice system idle iowait irq softirq steal (guest time is already inside user).
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return MachineCPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		d := time.Duration(n) * clockTick
		m.Total += d
		if i != 3 && i != 4 {
			m.Busy += d
		}
	}
	return m, nil
}

// Machine describes the box a run happened on.
type Machine struct {
	Cores    int
	MemBytes int64
	CPUModel string
}

// ParseMeminfoTotal returns MemTotal from /proc/meminfo in bytes.
func ParseMeminfoTotal(meminfo []byte) (int64, error) { return StatusKB(meminfo, "MemTotal") }

// ParseCPUModel returns the first "model name" of /proc/cpuinfo, or "" when there is none (e.g. on arm64).
func ParseCPUModel(cpuinfo []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ParseLoadAverage returns the one-minute load average, the first field of /proc/loadavg.
func ParseLoadAverage(loadavg []byte) (float64, error) {
	fields := strings.Fields(string(loadavg))
	if len(fields) < 3 {
		return 0, fmt.Errorf("loadavg: %q has no load averages", loadavg)
	}
	return strconv.ParseFloat(fields[0], 64)
}

// Process is a process of a stack the bench watches.
type Process struct {
	Name string
	Pid  int
}

// PeakRSS returns the process's VmHWM in bytes.
func (p Process) PeakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return 0, err
	}
	return StatusKB(b, "VmHWM")
}

// ResetPeakRSS sets VmHWM back to the current RSS (clear_refs "5", Linux ≥ 4.0), so the next PeakRSS is the
// peak of one measurement rather than of the process's whole life (start-up, earlier levels).
func (p Process) ResetPeakRSS() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Pid), []byte("5"), 0)
}

// CPUTime returns the user+system time the process has used so far.
func (p Process) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err != nil {
		return 0, err
	}
	return StatCPU(b)
}

// ParseIOSyscalls reads /proc/<pid>/io and returns its syscr + syscw: the read and write system calls the
// process has made (read, readv, write, writev and the like; a Go program reads and writes its sockets with
// them, so for the services and the sidecars this counts their network I/O calls).
func ParseIOSyscalls(io []byte) (int64, error) {
	var n int64
	found := 0
	for _, line := range strings.Split(string(io), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "syscr" && name != "syscw") {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/<pid>/io %s: %w", name, err)
		}
		n += v
		found++
	}
	if found != 2 {
		return 0, errors.New("/proc/<pid>/io: no syscr and syscw lines")
	}
	return n, nil
}

// Syscalls returns the read and write system calls the process has made so far (ParseIOSyscalls).
func (p Process) Syscalls() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.Pid))
	if err != nil {
		return 0, err
	}
	return ParseIOSyscalls(b)
}

// Memory is what a process holds, counted four ways (bytes). RSS counts every resident page it maps, shared
// or not: a sidecar's RSS includes the consul binary's text, which the agent and the other sidecar map too. PSS
// divides each shared page among the processes that map it, so the PSS of all processes adds up to the memory
// in use. Private (USS) is the pages only this process maps: what the machine gets back when it exits, and so
// what one more process of its kind costs. Anon is its anonymous memory (heap, stacks), private or not.
type Memory struct {
	RSS, PSS, Private, Anon int64
}

// ParseSmapsRollup reads /proc/<pid>/smaps_rollup (Linux ≥ 4.14): the sums of the process's smaps.
func ParseSmapsRollup(rollup []byte) (Memory, error) {
	var v [5]int64
	for i, field := range []string{"Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous"} {
		var err error
		if v[i], err = StatusKB(rollup, field); err != nil {
			return Memory{}, fmt.Errorf("smaps_rollup: %w", err)
		}
	}
	return Memory{RSS: v[0], PSS: v[1], Private: v[2] + v[3], Anon: v[4]}, nil
}

// Memory reads the process's memory now.
func (p Process) Memory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p.Pid))
	if err != nil {
		return Memory{}, err
	}
	return ParseSmapsRollup(b)
}
