// Package composetest runs the seed's own way to start the product, for real, on a Docker engine: `make build
// dockerize run-docker` from a clean state, then checks what customers, operators and attackers would see, and
// removes everything it created. It needs a Docker engine; without one it fails with the reason (never skips).
package composetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/stacktest"
	"github.com/pizzajoint/mesh/internal/testkit"
)

// stack is the Compose project under test.
type stack struct {
	root, project, caFile string
	gatewayPort, uiPort   int
	tracesPort            int
	env                   []string
	http                  *http.Client
	runDockerCold         time.Duration
}

var st *stack

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "composetest: no Docker engine answers (`docker info`: %v: %s); these tests need one\n",
			err, bytes.TrimSpace(out))
		return 1
	}
	s, err := newStack()
	if err != nil {
		fmt.Fprintln(os.Stderr, "composetest:", err)
		return 1
	}
	st = s
	defer s.cleanup()
	if err := s.start(); err != nil {
		fmt.Fprintln(os.Stderr, "composetest: starting the stack:", err)
		s.dumpStatus()
		return 1
	}
	code := m.Run()
	if code != 0 {
		s.dumpStatus()
	}
	return code
}

func newStack() (*stack, error) {
	root, err := testkit.RepoRoot()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	var ports [3]int // the gateway's, the Consul UI's and the trace UI's published ports
	for i := range ports {
		if ports[i], err = testkit.Port(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "composetest-")
	if err != nil {
		return nil, err
	}
	s := &stack{root: root, project: "pzt" + hex.EncodeToString(b), caFile: filepath.Join(dir, "ca.pem"),
		gatewayPort: ports[0], uiPort: ports[1], tracesPort: ports[2]}
	s.env = append(os.Environ(),
		"PIZZA_PROJECT="+s.project,
		fmt.Sprintf("PIZZA_GATEWAY_PORT=%d", s.gatewayPort),
		fmt.Sprintf("PIZZA_CONSUL_UI_PORT=%d", s.uiPort),
		fmt.Sprintf("PIZZA_JAEGER_UI_PORT=%d", s.tracesPort),
		"PIZZA_GATEWAY_BIND=127.0.0.1",
		"PIZZA_CA_FILE="+s.caFile,
		// The load tests order far faster than a customer from one address.
		"PIZZA_GATEWAY_ORDER_RATE=0",
		"RUN_DOCKER_TIMEOUT=300",
	)
	return s, nil
}

// start builds what it needs and runs `make build dockerize run-docker` under a time bound.
func (s *stack) start() error {
	img, err := s.cmd(20*time.Minute, "deploy/docker/mariadb-image.sh")
	if err != nil {
		return fmt.Errorf("MariaDB image: %w", err)
	}
	s.env = append(s.env, "PIZZA_MARIADB_IMAGE="+strings.TrimSpace(lastLine(img)))
	// The README's commands in a newcomer's order, under the tightest umask an operator may have (the local
	// stack's own): `make run` and `make stop`, then the seed's three. The cached consul and vault start as
	// owner-only copies, as an earlier `make run` left them; the images' non-root users must still run them.
	restore := syscall.Umask(0o077)
	defer syscall.Umask(restore)
	if err := s.plantOwnerOnlyTools(); err != nil {
		return err
	}
	if err := s.localStackRunsAndStops(); err != nil {
		return err
	}
	t0 := time.Now()
	if out, err := s.cmd(25*time.Minute, "make", "-s", "build", "dockerize", "run-docker"); err != nil {
		return fmt.Errorf("make build dockerize run-docker: %w\n%s", err, tail(out, 40))
	}
	s.runDockerCold = time.Since(t0)
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	s.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 16}}
	fmt.Fprintf(os.Stderr, "composetest: project %s up in %v (make build dockerize run-docker)\n", s.project, s.runDockerCold.Round(time.Second))
	return nil
}

// plantOwnerOnlyTools points CACHE_BIN at a folder of its own holding mode-0700 copies of the pinned consul, vault,
// nats-server and jaeger (built into the shared cache first when missing).
func (s *stack) plantOwnerOnlyTools() error {
	dir := filepath.Join(filepath.Dir(s.caFile), "tools")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, tool := range []string{"consul", "vault", "nats-server", "jaeger"} {
		path, err := s.cmd(30*time.Minute, "scripts/tools.sh", "ensure", tool)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(strings.TrimSpace(path))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, tool), b, 0o700); err != nil {
			return err
		}
	}
	s.env = append(s.env, "CACHE_BIN="+dir)
	return nil
}

// localStackRunsAndStops runs `make run` on private ports and `make stop`, with the stack's CACHE_BIN.
func (s *stack) localStackRunsAndStops() error {
	t0 := time.Now()
	local, err := stacktest.Start(stacktest.Options{ViaMake: true, Env: map[string]string{"CACHE_BIN": envValue(s.env, "CACHE_BIN")}})
	if err != nil {
		if local != nil {
			local.DumpLogs(os.Stderr)
			_ = local.Stop()
		}
		return fmt.Errorf("make run: %w", err)
	}
	defer os.RemoveAll(local.Dir)
	if err := local.Stop(); err != nil {
		return fmt.Errorf("make stop: %w", err)
	}
	fmt.Fprintf(os.Stderr, "composetest: make run and make stop of the local stack took %v\n", time.Since(t0).Round(time.Second))
	return nil
}

// envValue is the last value of key in env.
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// cleanup removes every container, network and volume of the project (images stay cached).
func (s *stack) cleanup() {
	out, err := s.compose(3*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "10")
	if err != nil {
		fmt.Fprintf(os.Stderr, "composetest: cleanup of %s failed: %v\n%s", s.project, err, out)
	}
	_ = os.RemoveAll(filepath.Dir(s.caFile))
}

func (s *stack) dumpStatus() {
	out, _ := s.compose(time.Minute, "ps", "-a")
	fmt.Fprintln(os.Stderr, out)
	out, _ = s.compose(time.Minute, "logs", "--tail", "15")
	fmt.Fprintln(os.Stderr, tail(out, 150))
}

// cmd runs name in the repository root with the stack's environment; it returns stdout, and stderr in the error.
func (s *stack) cmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Dir, c.Env = s.root, s.env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(stderr.String(), 20))
	}
	return stdout.String(), nil
}

func (s *stack) compose(timeout time.Duration, args ...string) (string, error) {
	return s.cmd(timeout, "docker", append([]string{"compose", "-p", s.project, "--project-directory", s.root,
		"-f", filepath.Join(s.root, "docker-compose.yml")}, args...)...)
}

// meshctl runs the provisioning program against the stack (deploy/docker/run.sh meshctl).
func (s *stack) meshctl(args ...string) (string, error) {
	return s.cmd(2*time.Minute, "deploy/docker/run.sh", append([]string{"meshctl"}, args...)...)
}

// container is the Docker name of a service's (first) container.
func (s *stack) container(service string) string { return s.project + "-" + service + "-1" }

func (s *stack) url(path string) string {
	return fmt.Sprintf("https://localhost:%d%s", s.gatewayPort, path)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cmdT, composeT and meshctlT are cmd, compose and meshctl that fail the test on an error.
func (s *stack) cmdT(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := s.cmd(2*time.Minute, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *stack) composeT(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.compose(2*time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *stack) meshctlT(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.meshctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
