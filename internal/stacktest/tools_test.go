package stacktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// Every command of the stack starts with `tools.sh ensure`, and the tests call it dozens of times: it must answer
// the same path every time, by both of its routes (the tool on PATH, and the pinned build in the cache). Each
// route reads the tool's version; a pipeline that stops reading early kills the tool with SIGPIPE, which under
// pipefail failed about one call in twenty. Calls run four at a time, as parallel test packages make them. The
// pinned build is never rebuilt once cached: its version line must read back (seen red with nats-server's
// "nats-server v2.15.3", which the version pattern once missed: every ensure rebuilt it).
func TestToolsEnsureAnswersEveryTime(t *testing.T) {
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ensure := filepath.Join(root, "scripts", "tools.sh")
	const calls, parallel = 200, 4
	for _, tool := range []string{"consul", "vault", "nats-server"} {
		out, err := exec.Command(ensure, "ensure", tool).Output() // builds it once when missing
		if err != nil {
			t.Fatalf("tools.sh ensure %s: %v", tool, err)
		}
		cached := strings.TrimSpace(string(out))
		built, err := os.Stat(cached)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if now, err := os.Stat(cached); err != nil || !now.ModTime().Equal(built.ModTime()) {
				t.Errorf("tools.sh ensure %s rebuilt the cached binary", tool)
			}
		})
		onPath := t.TempDir()
		if err := os.Symlink(cached, filepath.Join(onPath, tool)); err != nil {
			t.Fatal(err)
		}
		routes := map[string][]string{
			"cache": append(os.Environ(), "CACHE_BIN="+filepath.Dir(cached)),
			"PATH":  append(os.Environ(), "PATH="+onPath+":"+os.Getenv("PATH")),
		}
		for route, env := range routes {
			t.Run(tool+" from "+route, func(t *testing.T) {
				// PATH first, else the cache (the cache route answers a consul on the machine's PATH too).
				want := lookPath(env, tool)
				if want == "" {
					want = cached
				}
				var mu sync.Mutex
				failures := map[string]int{}
				var wg sync.WaitGroup
				for range parallel {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range calls / parallel {
							cmd := exec.Command(ensure, "ensure", tool)
							cmd.Env = env
							out, err := cmd.Output()
							if got := strings.TrimSpace(string(out)); err != nil || got != want {
								mu.Lock()
								failures[describeFailure(err, got)]++
								mu.Unlock()
							}
						}
					}()
				}
				wg.Wait()
				for why, n := range failures {
					t.Errorf("tools.sh ensure %s failed %d of %d times: %s", tool, n, calls, why)
				}
			})
		}
	}
}

// lookPath is the tool on env's PATH, or "".
func lookPath(env []string, tool string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			for _, dir := range filepath.SplitList(v) {
				if fi, err := os.Stat(filepath.Join(dir, tool)); err == nil && fi.Mode()&0o111 != 0 {
					return filepath.Join(dir, tool)
				}
			}
		}
	}
	return ""
}

func describeFailure(err error, got string) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Error() + ": " + strings.TrimSpace(lastLine(string(ee.Stderr)))
	}
	if err != nil {
		return err.Error()
	}
	return "printed " + got
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
