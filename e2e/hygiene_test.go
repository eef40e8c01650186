package e2e

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pizzajoint/mesh/internal/stacktest"
)

// secretsOf lists every secret value the stack holds in files: the operator's token and the unseal key, and
// each instance's wrapped secret_id and Consul token. None may appear in a log or on a command line. (A role_id
// is AppRole's identifier, not its secret: Vault itself logs it as the name of the login's identity alias.)
func secretsOf(s *stacktest.Stack) (map[string]string, error) {
	files := []string{filepath.Join(s.Dir, "vault", "operator-token"), filepath.Join(s.Dir, "vault", "unseal-key")}
	for _, name := range []string{"secret-id", "consul-token"} {
		found, _ := filepath.Glob(filepath.Join(s.Dir, "credentials", "*", name))
		files = append(files, found...)
	}
	secrets := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if v := strings.TrimSpace(string(b)); len(v) >= 8 {
			rel, _ := filepath.Rel(s.Dir, f)
			secrets[rel] = v
		}
	}
	for i, v := range remembered() {
		secrets[fmt.Sprintf("secret %d a test was given", i+1)] = v
	}
	if len(secrets) < 8 {
		return nil, fmt.Errorf("found only %d secrets to look for; the scan would prove nothing", len(secrets))
	}
	return secrets, nil
}

// Secrets the tests were handed (staff tokens, leased Consul tokens, unwrapped secret_ids): the scans look for
// them too.
var (
	rememberedMu      sync.Mutex
	rememberedSecrets []string
)

func remember(secret string) string {
	rememberedMu.Lock()
	defer rememberedMu.Unlock()
	rememberedSecrets = append(rememberedSecrets, secret)
	return secret
}

func remembered() []string {
	rememberedMu.Lock()
	defer rememberedMu.Unlock()
	return slices.Clone(rememberedSecrets)
}

// Shapes of secrets whatever their value: Vault tokens, and password fields with a value.
var secretShapes = regexp.MustCompile(`\bhvs\.[A-Za-z0-9_-]{20,}|(?i)"?(password|passwd|secret_id)"?\s*[:=]\s*"?[A-Za-z0-9/+_-]{8,}`)

// hmacs are how Vault's audit log shows secrets: hashed, which is what it should do.
var hmacs = regexp.MustCompile(`hmac-sha256:[0-9a-f]+`)

func findSecretShape(b []byte) []byte { return secretShapes.Find(hmacs.ReplaceAll(b, []byte("HMAC"))) }

// scanForSecrets runs after every test: no secret and no customer data in any of the stack's logs.
func scanForSecrets(s *stacktest.Stack) error {
	secrets, err := secretsOf(s)
	if err != nil {
		return err
	}
	logs := s.Logs()
	if len(logs) < 8 {
		return fmt.Errorf("found only %d logs: %v", len(logs), logs)
	}
	var problems []string
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				problems = append(problems, fmt.Sprintf("%s holds %s", filepath.Base(f), name))
			}
		}
		for _, pii := range []string{testPhone, testAddress} {
			if bytes.Contains(b, []byte(pii)) {
				problems = append(problems, fmt.Sprintf("%s holds customer data %q", filepath.Base(f), pii))
			}
		}
		if m := findSecretShape(b); m != nil {
			problems = append(problems, fmt.Sprintf("%s holds something shaped like a secret: %.20s…", filepath.Base(f), m))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Printf("scanned %d stack logs for %d secrets, customer data and secret shapes: clean\n", len(logs), len(secrets))
	return nil
}

// No process on the machine shows a secret of the stack on its command line (`ps` shows those to everyone).
func TestNoSecretsOnCommandLines(t *testing.T) {
	secrets, err := secretsOf(stack)
	if err != nil {
		t.Fatal(err)
	}
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread
		}
		if bytes.Contains(b, []byte(stack.Dir)) || bytes.Contains(b, []byte("connect\x00proxy")) {
			ours++
		}
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s shows %s: %q", p, name, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
		if m := findSecretShape(b); m != nil {
			t.Errorf("%s shows something shaped like a secret: %.20s…", p, m)
		}
	}
	if ours < 5 {
		t.Fatalf("saw only %d of the stack's processes among %d; the scan would prove nothing", ours, len(procs))
	}
}

// checkNoDataRace runs after every test: the services are built with -race (stackOptions.GoFlags), and the
// race detector reports to the process's stderr, which is its log. One report anywhere fails the run.
func checkNoDataRace(s *stacktest.Stack) error {
	var problems []string
	// A check that cannot fail is none: the binaries must really carry the race detector.
	for _, bin := range []string{"order", "gateway", "meshctl"} {
		info, err := buildinfo.ReadFile(filepath.Join(s.Dir, "bin", bin))
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(info.Settings, func(b debug.BuildSetting) bool { return b.Key == "-race" && b.Value == "true" }) {
			problems = append(problems, bin+" was not built with -race")
		}
	}
	for _, f := range s.Logs() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if n := bytes.Count(b, []byte("WARNING: DATA RACE")); n > 0 {
			i := bytes.Index(b, []byte("WARNING: DATA RACE"))
			problems = append(problems, fmt.Sprintf("%s reports %d data races; the first:\n%s", filepath.Base(f), n, b[i:min(len(b), i+3000)]))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}
