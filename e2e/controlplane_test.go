package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// lanAddress is this machine's own non-loopback IPv4 address: what an outsider on the network would reach.
func lanAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Fatal("this machine has no non-loopback IPv4 address to attack from")
	return ""
}

// consulEndpoints are the TCP ways to reach Consul's API: the operators' HTTPS front on loopback and on the
// machine's LAN address. (The agent's own API is a unix socket; see TestConsulAgentHasNoTCPAPI.)
func consulEndpoints(t *testing.T) map[string]string {
	lan := lanAddress(t)
	return map[string]string{
		"loopback https": stack.ConsulHTTPS,
		"LAN https":      fmt.Sprintf("https://%s:%d", lan, stack.Ports.ConsulHTTPS),
	}
}

// frontAddr is the socket through which service's user reaches the agent.
func frontAddr(service string) string {
	return "unix://" + filepath.Join(stack.Dir, "consul-"+service+".sock")
}

// The agent's HTTP API is not on any TCP port: the consul process listens only on its server and serf ports,
// on loopback. Its unix socket is root's; each service's user opens only its own front.
func TestConsulAgentHasNoTCPAPI(t *testing.T) {
	pid, err := stack.Pid("consul")
	if err != nil {
		t.Fatal(err)
	}
	mine := socketInodes(pid)
	var ports []int
	for _, l := range listeners(t) {
		if mine[l.inode] {
			ports = append(ports, l.port)
			if !l.ip.IsLoopback() {
				t.Errorf("consul listens on %s:%d", l.ip, l.port)
			}
		}
	}
	slices.Sort(ports)
	want := []int{stack.Ports.ConsulServer, stack.Ports.ConsulSerfLAN, stack.Ports.ConsulSerfWAN}
	slices.Sort(want)
	if !slices.Equal(slices.Compact(ports), want) {
		t.Errorf("consul listens on TCP ports %v; want only its server and serf ports %v", ports, want)
	}
	ask := func(user, addr string) error {
		cmd := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--clear-groups", "--",
			"curl", "-sS", "-o", "/dev/null", "--unix-socket", strings.TrimPrefix(addr, "unix://"), "http://consul/v1/status/leader")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := ask("pizza-order", frontAddr("order")); err != nil {
		t.Fatalf("order's user opening its own front: %v (positive control)", err)
	}
	for _, c := range []struct{ user, addr string }{
		{"pizza-order", stack.ConsulAddr}, {"pizza-gateway", stack.ConsulAddr}, {"nobody", stack.ConsulAddr},
		{"pizza-gateway", frontAddr("order")}, {"pizza-order", frontAddr("gateway")}, {"nobody", frontAddr("order")},
	} {
		if err := ask(c.user, c.addr); err == nil {
			t.Errorf("user %s opened %s", c.user, c.addr)
		}
	}
}

// consulCall sends method path (with body) to the agent at base as token and returns the status and body.
func consulCall(t *testing.T, base, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	client, url := trustingCA(t), base+path
	if sock, ok := strings.CutPrefix(base, "unix://"); ok {
		client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
		url = "http://consul" + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// trustingCA is a client that verifies servers against the project's CA only.
func trustingCA(t *testing.T) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(stack.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// An outsider without a token gets nothing useful from Consul, from loopback or from the network: no leaf
// certificate (the key to another service's identity), no intention or check written, no catalog of order.
// The same calls with the right token succeed, so the refusals are the ACLs' doing.
func TestAnonymousConsulIsRefused(t *testing.T) {
	intention := map[string]any{"Kind": "service-intentions", "Name": "order",
		"Sources": []map[string]any{{"Name": "intruder", "Action": "allow"}}}
	check := map[string]any{"Name": "steal", "HTTP": fmt.Sprintf("http://127.0.0.1:%d/orders", stack.Ports.Order), "Interval": "10s"}
	for name, base := range consulEndpoints(t) {
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				what, method, path string
				body               any
			}{
				{"leaf certificate for gateway", "GET", "/v1/agent/connect/ca/leaf/gateway", nil},
				{"intention write", "PUT", "/v1/config", intention},
				{"check registration", "PUT", "/v1/agent/check/register", check},
				{"agent's checks", "GET", "/v1/agent/checks", nil},
				{"agent's services", "GET", "/v1/agent/services", nil},
			} {
				status, body := consulCall(t, base, "", c.method, c.path, c.body)
				if status != http.StatusForbidden && !(c.method == "GET" && status == 200 && emptyJSON(body)) {
					t.Errorf("anonymous %s (%s %s): %d %.200s; want 403 or nothing", c.what, c.method, c.path, status, body)
				}
			}
			status, body := consulCall(t, base, "", "GET", "/v1/catalog/service/order", nil)
			if status != 200 && status != 403 || strings.Contains(string(body), `"ServiceName":"order"`) {
				t.Errorf("anonymous catalog read of order: %d %.200s; want no entries", status, body)
			}
			// Positive control: the operator's token reads order from the catalog on the same listener.
			status, body = consulCall(t, base, operatorConsulToken(t), "GET", "/v1/catalog/service/order", nil)
			if status != 200 || !strings.Contains(string(body), `"ServiceName":"order"`) {
				t.Errorf("operator catalog read of order: %d %.200s; want order's instances", status, body)
			}
		})
	}
	// The anonymous write above was refused; make sure nothing of it exists.
	entry, _, err := consul(t).ConfigEntries().Get(api.ServiceIntentions, "order", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range entry.(*api.ServiceIntentionsConfigEntry).Sources {
		if src.Name == "intruder" {
			t.Errorf("an intention from intruder to order exists")
		}
	}
}

func emptyJSON(b []byte) bool {
	s := strings.TrimSpace(string(b))
	return s == "{}" || s == "[]" || s == "null"
}

func operatorConsulToken(t *testing.T) string {
	consul(t) // leases it once
	return operatorToken
}

// Each instance's token is its service's identity and nothing more, asked where the service asks (its front):
// order's token gets order's certificate but not gateway's, and cannot write intentions or register gateway.
func TestServiceTokenIsItsOwnIdentityOnly(t *testing.T) {
	order, gateway := instanceToken(t, "order-1"), instanceToken(t, "gateway-1")
	if gateway == order || instanceToken(t, "order-2") == order {
		t.Fatal("two instances share a Consul token")
	}
	if status, body := consulCall(t, frontAddr("order"), order, "GET", "/v1/agent/connect/ca/leaf/order", nil); status != 200 {
		t.Fatalf("order's token asking for order's own leaf: %d %.200s; want 200 (positive control)", status, body)
	}
	if status, body := consulCall(t, frontAddr("order"), order, "GET", "/v1/agent/connect/ca/leaf/gateway", nil); status != http.StatusForbidden {
		t.Errorf("order's token asking for gateway's leaf: %d %.200s; want 403", status, body)
	}
	intention := map[string]any{"Kind": "service-intentions", "Name": "gateway",
		"Sources": []map[string]any{{"Name": "order", "Action": "allow"}}}
	if status, body := consulCall(t, frontAddr("order"), order, "PUT", "/v1/config", intention); status != http.StatusForbidden {
		t.Errorf("order's token writing an intention: %d %.200s; want 403", status, body)
	}
	impostor := map[string]any{"ID": "gateway-9", "Name": "gateway", "Port": 1}
	if status, body := consulCall(t, frontAddr("order"), order, "PUT", "/v1/agent/service/register", impostor); status != http.StatusForbidden {
		t.Errorf("order's token registering a gateway: %d %.200s; want 403", status, body)
	}
	if status, _ := consulCall(t, frontAddr("gateway"), gateway, "GET", "/v1/agent/connect/ca/leaf/order", nil); status != http.StatusForbidden {
		t.Errorf("gateway's token asking for order's leaf: %d; want 403", status)
	}
}

// Vault speaks TLS only: a plain HTTP request gets no answer from its API.
func TestVaultRefusesPlainHTTP(t *testing.T) {
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/sys/health", stack.Ports.Vault)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
			t.Errorf("plain HTTP to Vault: %d %.200s; want it refused", resp.StatusCode, b)
		}
	}
	// Positive control: the same request over TLS, verified against the project's CA, answers.
	resp, err = trustingCA(t).Get(strings.Replace(url, "http://", "https://", 1))
	if err != nil {
		t.Fatalf("HTTPS to Vault: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS health: %d", resp.StatusCode)
	}
	// And from the LAN address, Vault does not listen at all.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(lanAddress(t), strconv.Itoa(stack.Ports.Vault)), 3*time.Second); err == nil {
		conn.Close()
		t.Errorf("Vault listens on the LAN address")
	}
}

// vaultTokenShape matches Vault's service and batch tokens.
var vaultTokenShape = regexp.MustCompile(`^(hv[sb]\.[A-Za-z0-9_-]{20,}|s\.[A-Za-z0-9]{20,})$`)

// After `make run` no token anywhere under the state folder carries the root policy: bootstrap revoked the root
// token. Each token-shaped file is looked up; wrapped secret_ids are looked up as wrapping tokens, which does
// not use them up.
func TestNoRootTokenInState(t *testing.T) {
	var looked []string
	err := filepath.WalkDir(stack.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if strings.Contains(path, string(filepath.Separator)+"mariadb"+string(filepath.Separator)) ||
			strings.Contains(path, string(filepath.Separator)+"data"+string(filepath.Separator)) {
			return filepath.SkipDir // database files and Vault's storage (encrypted)
		}
		info, err := d.Info()
		if err != nil || info.Size() > 4096 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tok := strings.TrimSpace(string(b))
		if !vaultTokenShape.MatchString(tok) {
			return nil
		}
		rel, _ := filepath.Rel(stack.Dir, path)
		if filepath.Base(path) == "secret-id" {
			info, err := vaultAs(t, "").Logical().Write("sys/wrapping/lookup", map[string]any{"token": tok})
			switch {
			case vaultStatus(err) == http.StatusBadRequest && strings.Contains(err.Error(), "wrapping token is not valid"):
				return nil // unwrapped already, by the service it was delivered to
			case err != nil:
				t.Errorf("%s: look up the wrapping token: %v", rel, err)
			case info == nil:
				t.Errorf("%s: look up the wrapping token: an empty answer", rel)
			case !strings.HasSuffix(fmt.Sprint(info.Data["creation_path"]), "/secret-id"):
				t.Errorf("%s wraps %v, not a secret_id", rel, info.Data["creation_path"])
			}
			return nil
		}
		sec, err := vaultAs(t, tok).Auth().Token().LookupSelf()
		if vaultStatus(err) == http.StatusForbidden {
			return nil // not a live token: Vault refuses it
		}
		if err != nil {
			t.Errorf("%s: look up the token: %v", rel, err)
			return nil
		}
		looked = append(looked, rel)
		policies, _ := sec.TokenPolicies()
		if slices.Contains(policies, "root") {
			t.Errorf("%s holds a root token", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(looked, filepath.Join("vault", "operator-token")) {
		t.Fatalf("looked up %v; the operator token was not among them, so the scan proves nothing", looked)
	}
	t.Logf("looked up %d live tokens in the state folder: %v", len(looked), looked)
}

// A delivered secret_id is response-wrapped: it can be unwrapped exactly once.
func TestWrappedSecretIDUnwrapsOnce(t *testing.T) {
	dir := filepath.Join(stack.Dir, "credentials", "probe-1")
	deliver := exec.Command(filepath.Join(stack.Root, "scripts", "stack.sh"), "meshctl", "deliver")
	deliver.Env = append(stack.Env(), "MESHCTL_INSTANCE_SERVICE=order", "MESHCTL_INSTANCE_ID=probe-1", "MESHCTL_INSTANCE_DIR="+dir)
	if out, err := deliver.CombinedOutput(); err != nil {
		t.Fatalf("meshctl deliver: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "secret-id"))
	if err != nil {
		t.Fatal(err)
	}
	wrapped := remember(strings.TrimSpace(string(b)))
	anon := vaultAs(t, "")
	sec, err := anon.Logical().Unwrap(wrapped)
	if err != nil || sec == nil || sec.Data["secret_id"] == nil {
		t.Fatalf("first unwrap: %v %v; want the secret_id", sec, err)
	}
	remember(sec.Data["secret_id"].(string))
	if again, err := anon.Logical().Unwrap(wrapped); err == nil {
		t.Errorf("second unwrap succeeded: %v", again)
	}
	// Retire the probe's secret_id, as the runbook would.
	for _, acc := range secretIDAccessorsOf(t, "probe-1") {
		if _, err := vaultOperator(t).Logical().Write("auth/approle/role/order/secret-id-accessor/destroy",
			map[string]any{"secret_id_accessor": acc}); err != nil {
			t.Error(err)
		}
	}
}

// A registration the agent lost comes back by itself within seconds: each service checks every
// consulreg.HealInterval that the agent still has it, and registers again (its sidecar's with it).
func TestLostRegistrationComesBack(t *testing.T) {
	order := consulAs(t, frontAddr("order"), instanceToken(t, "order-2"))
	if err := order.Agent().ServiceDeregister("order-2"); err != nil {
		t.Fatal(err)
	}
	lost := time.Now()
	healsBefore := countLogLines(t, "order-2", "consul agent lost this instance's registration; registering again")
	eventually(t, 15*time.Second, func() error {
		for _, id := range []string{"order-2", "order-2-sidecar-proxy"} {
			if _, _, err := consul(t).Agent().Service(id, nil); err != nil {
				return fmt.Errorf("%s: %v", id, err)
			}
		}
		return nil
	})
	t.Logf("order-2 and its sidecar registered again %s after the agent lost them", time.Since(lost).Round(100*time.Millisecond))
	if countLogLines(t, "order-2", "consul agent lost this instance's registration; registering again") <= healsBefore {
		t.Errorf("order-2's log does not say it registered again: something else brought the registration back")
	}
	eventually(t, 30*time.Second, func() error {
		entries, _, err := consul(t).Health().Service("order", "", true, nil)
		if err != nil || len(entries) < 2 {
			return fmt.Errorf("%d passing order instances (%v); want 2", len(entries), err)
		}
		return nil
	})
}

// gateway and order run as their own OS users, and neither can read the other's credentials.
func TestServicesRunAsTheirOwnUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the stack runs its services as their own users only when started as root; run the tests as root")
	}
	for name, user := range map[string]string{"order": "pizza-order", "gateway": "pizza-gateway",
		"sidecar-order-1": "pizza-order", "sidecar-gateway-1": "pizza-gateway"} {
		pid, err := stack.Pid(name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if err != nil {
			t.Fatal(err)
		}
		uid := info.Sys().(*syscall.Stat_t).Uid
		if want := lookupUID(t, user); uid != want {
			t.Errorf("%s runs as uid %d; want %s (%d)", name, uid, user, want)
		}
	}
	read := func(user, file string) error {
		cmd := exec.Command("setpriv", "--reuid="+user, "--regid="+user, "--clear-groups", "--", "cat", file)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		if err := cmd.Run(); err != nil {
			return errors.New(strings.TrimSpace(stderr.String()))
		}
		return nil
	}
	creds := filepath.Join(stack.Dir, "credentials")
	for _, f := range []string{"order-1/role-id", "order-1/secret-id", "order-1/consul-token"} {
		if err := read("pizza-order", filepath.Join(creds, f)); err != nil {
			t.Fatalf("order's user reading its own %s: %v (positive control)", f, err)
		}
		if err := read("pizza-gateway", filepath.Join(creds, f)); err == nil {
			t.Errorf("gateway's user can read order's %s", f)
		}
	}
	if err := read("pizza-order", filepath.Join(creds, "gateway-1", "consul-token")); err == nil {
		t.Errorf("order's user can read gateway's consul token")
	}
}

func lookupUID(t *testing.T, user string) uint32 {
	t.Helper()
	out, err := exec.Command("id", "-u", user).Output()
	if err != nil {
		t.Fatalf("id -u %s: %v", user, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

// kill -9 of the Consul agent while customers order, then a start: within 30 s every service and sidecar
// passes again, by themselves (persisted registrations, and each service checks that the agent still has it),
// and intentions still deny strangers. Every acknowledged order is stored exactly once.
func TestConsulAgentRestartHeals(t *testing.T) {
	l := startLoad(t, "consul-restart", loadClients)
	time.Sleep(2 * time.Second)
	pid, err := stack.Pid("consul")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, pid)
	killed := time.Now()
	time.Sleep(2 * time.Second)
	starting := time.Now()
	if out, err := stack.Script(5*time.Minute, "stack.sh", "start"); err != nil {
		l.stop()
		t.Fatalf("stack.sh start after killing Consul: %v\n%s", err, out)
	}
	restarted := time.Now()
	eventually(t, 30*time.Second, func() error { return meshPassing(consul(t)) })
	healed := time.Since(restarted)
	time.Sleep(3 * time.Second)
	r := l.stop()
	stored := checkStoredOnce(t, r, "consul-restart")
	t.Logf("consul kill -9: restarted %s after the kill, all passing %s after the restart; sent %d, acknowledged %d, stored %d, failed attempts %d (first: %v)",
		restarted.Sub(killed).Round(100*time.Millisecond), healed.Round(100*time.Millisecond), r.Sent, r.Acked, stored, r.Failures, r.FirstFailures)
	if r.Acked == 0 {
		t.Fatal("no order acknowledged")
	}
	// While the agent is away nothing on an order's path needs it: the load's calls go over the gateway's
	// kept-alive upstream connections, and sidecars keep their listeners, certificates and upstream instances
	// in memory. When it starts again it knows the instances but not yet their health: until their checks have
	// passed (healed), the gateway's sidecar reloads and finds no healthy instance to dial, so a call may fail
	// after all six of the gateway's tries (1.55 s of pauses; it then answers 503), and its client pauses 200 ms.
	// Failed attempts are therefore answered only from the agent's start until one retry chain after everything
	// passes, each client's at least 1.75 s apart.
	from, to := starting, restarted.Add(healed+gatewayRetryPauses+time.Second) // a second for the last answer's round trip
	perClient := int(to.Sub(from)/(gatewayRetryPauses+loadPause)) + 1
	for i, at := range r.FailedAt {
		if at.Before(from) || at.After(to) {
			t.Errorf("failed attempt %d answered at %s, outside the agent's restart (%s to %s)", i,
				at.Format("15:04:05.000"), from.Format("15:04:05.000"), to.Format("15:04:05.000"))
		}
	}
	if limit := loadClients * perClient; r.Failures > limit {
		t.Errorf("%d failed attempts across the agent's restart (first: %v); the mechanism allows %d", r.Failures, r.FirstFailures, limit)
	}
	if out, err := stack.Tool("consul", nil, "intention", "check", "intruder", "order"); err == nil || !strings.Contains(out, "Denied") {
		t.Errorf("after the restart, intruder → order: %q %v; want Denied", out, err)
	}
	if status, _, err := placeOrder(t, "", orderBody("After Consul restart")); status != http.StatusCreated {
		t.Errorf("after the restart: %d %v", status, err)
	}
}
