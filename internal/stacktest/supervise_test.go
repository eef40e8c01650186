package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// scripts/supervise.sh restarts a command that exits, after 1 s then 2 s (doubling), counts the restarts, and on
// TERM stops its child first and exits without a restart.
func TestSuperviseRestartsWithBackoffAndStops(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "runs")
	// Runs: exits at once twice (restarts after 1 s and 2 s), then stays up until TERM, which it records.
	script := `echo run >>"$0"; n=$(wc -l <"$0"); if [ "$n" -lt 3 ]; then exit 3; fi
trap 'echo term >>"$0"; exit 0' TERM; while :; do sleep 0.1; done`
	cmd := exec.Command(filepath.Join(root, "scripts", "supervise.sh"), "demo", "--", "sh", "-c", script, marker)
	cmd.Env = append(os.Environ(), "PID_DIR="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { // a failed run leaves nothing behind
		_ = cmd.Process.Kill()
		if pid, err := readPid(filepath.Join(dir, "demo.child")); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(marker), "run\nrun\nrun\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no third run within 10 s; runs %q, output:\n%s", readFile(marker), out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if took := 10*time.Second - time.Until(deadline); took < 3*time.Second {
		t.Errorf("third run after %s; the back-off (1 s, then 2 s) makes it at least 3 s", took)
	}
	if got := strings.TrimSpace(readFile(filepath.Join(dir, "demo.restarts"))); got != "2" {
		t.Errorf("demo.restarts = %q, want 2", got)
	}
	if readFile(filepath.Join(dir, "demo.child")) == "" {
		t.Error("no demo.child while the child runs")
	}
	time.Sleep(200 * time.Millisecond) // let the child install its trap
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("supervisor still running 10 s after TERM; output:\n%s", out.String())
	}
	if !strings.HasSuffix(readFile(marker), "term\n") {
		t.Errorf("child did not get TERM: %q", readFile(marker))
	}
	if _, err := os.Stat(filepath.Join(dir, "demo.child")); !os.IsNotExist(err) {
		t.Errorf("demo.child left after stop: %v", err)
	}
	if n := strings.Count(out.String(), "supervise: demo exited"); n != 2 {
		t.Errorf("%d restart lines in the log, want 2:\n%s", n, out.String())
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
