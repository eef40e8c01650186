package composetest

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type placed struct {
	ID            string `json:"id"`
	TrackingToken string `json:"tracking_token"`
	Status        string `json:"status"`
	RequestID     string `json:"-"` // the X-Request-ID the gateway answered with: the trace ID
}

// orderBody is an order whose customer is named after its load (the idempotency key up to its first "-"), so that
// storedOnce finds every order a load stored, with or without a key row.
func orderBody(key string) string {
	load, _, _ := strings.Cut(key, "-")
	return `{"customer":{"name":"Compose ` + load + `","phone":"+44 20 7946 0000","address":"1 Pizza Lane"},` +
		`"items":[{"pizza":"margherita","size":"M","quantity":1}]}`
}

// placeOrder POSTs one order with key; it returns the HTTP status and the order on 201.
func placeOrder(key string) (int, placed, error) {
	req, err := http.NewRequest(http.MethodPost, st.url("/pizza"), strings.NewReader(orderBody(key)))
	if err != nil {
		return 0, placed{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := st.http.Do(req)
	if err != nil {
		return 0, placed{}, err
	}
	defer resp.Body.Close()
	p := placed{RequestID: resp.Header.Get("X-Request-ID")}
	if resp.StatusCode == http.StatusCreated {
		err = json.NewDecoder(resp.Body).Decode(&p)
	}
	return resp.StatusCode, p, err
}

// kept orders from the first test, read again after a restart of the stack.
var kept []placed

func TestOrderStreamAndStaffChange(t *testing.T) {
	code, p, err := placeOrder("composetest-first")
	if err != nil || code != http.StatusCreated || p.ID == "" {
		t.Fatalf("POST /pizza = %d, %+v, %v; want 201", code, p, err)
	}
	kept = append(kept, p)

	stream, err := http.NewRequest(http.MethodGet, st.url("/pizza/"+p.ID+"/events?token="+p.TrackingToken), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: st.http.Transport} // no overall timeout: a stream stays open
	resp, err := client.Do(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %s", resp.Status)
	}
	statuses := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev struct{ Status string }
				if json.Unmarshal([]byte(data), &ev) == nil {
					statuses <- ev.Status
				}
			}
		}
		close(statuses)
	}()
	next := func(want string) {
		t.Helper()
		select {
		case got := <-statuses:
			if got != want {
				t.Fatalf("stream delivered %q, want %q", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("stream delivered no %s within 20 s", want)
		}
	}
	next("CREATED")

	staff := strings.TrimSpace(st.meshctlT(t, "token", "staff", "composetest"))
	body := strings.NewReader(`{"status":"ACCEPTED"}`)
	req, _ := http.NewRequest(http.MethodPost, st.url("/staff/api/orders/"+p.ID+"/status"), body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+staff)
	sresp, err := st.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sresp.Body.Close()
	if sresp.StatusCode != http.StatusOK {
		t.Fatalf("staff status change: %s", sresp.Status)
	}
	next("ACCEPTED")
}

// probeFrom runs `<binary> probe ARGS` inside a service's container; nil means the URL answered 2xx.
func probeFrom(service, binary string, args ...string) error {
	_, err := st.cmd(time.Minute, "docker", append([]string{"exec", st.container(service), "/usr/local/bin/" + binary, "probe",
		"-timeout", "2s"}, args...)...)
	return err
}

func TestOrderPlainPortOnlyInsideItsPod(t *testing.T) {
	ip := strings.TrimSpace(st.cmdT(t, "docker", "inspect", "-f",
		"{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", st.container("order-pod")))
	if ip == "" {
		t.Fatal("order's pod has no address")
	}
	// The control: inside order's pod the plain port answers, so a refusal below is the network's doing.
	if err := probeFrom("order", "order", "http://127.0.0.1:9090/health/livez"); err != nil {
		t.Fatalf("order's own pod cannot reach its plain port: %v", err)
	}
	for _, target := range []string{"http://order-pod:9090", "http://order:9090", "http://" + ip + ":9090", "http://127.0.0.1:9090"} {
		if err := probeFrom("gateway", "gateway", target+"/health/livez"); err == nil {
			t.Errorf("the gateway's container reached order's plain port at %s", target)
		}
	}
}

func TestConsulRefusesAnonymousCallers(t *testing.T) {
	ca := "/pizza/trust/ca.pem"
	// The control: the server's front answers an unauthenticated status call over HTTPS.
	if err := probeFrom("gateway", "gateway", "-cacert", ca, "https://consul:8501/v1/status/leader"); err != nil {
		t.Fatalf("consul's front unreachable from the Compose network: %v", err)
	}
	refused := []string{
		"https://consul:8501/v1/agent/self",                    // ACL: agent read
		"https://consul:8501/v1/acl/tokens",                    // ACL: acl read
		"https://consul:8501/v1/agent/connect/ca/leaf/order",   // the front passes no leaf
		"https://consul:8501/v1/kv/anything",                   // ACL: key read
		"http://consul:8500/v1/status/leader",                  // the server's own API is on its pod's loopback only
		"http://order-pod:8500/v1/status/leader",               // so is every client agent's
		"http://127.0.0.1:8500/v1/agent/connect/ca/leaf/order", // the gateway's own agent holds no leaf of order
	}
	for _, u := range refused {
		if err := probeFrom("gateway", "gateway", "-cacert", ca, u); err == nil {
			t.Errorf("an anonymous call from the gateway's container succeeded: %s", u)
		}
	}
}

// loadResult is what a closed-loop load saw.
type loadResult struct {
	acked          map[string]string // idempotency key → order ID
	ackedAt        []time.Time       // when each acknowledgement arrived
	failedAttempts int
	firstFail      time.Time
	lastFail       time.Time
}

// retryPause is how long a load's client waits before it tries a failed order again.
const retryPause = 100 * time.Millisecond

// closedLoop places orders from workers clients until stop closes; a key is retried (up to 90 s) until it gets
// 201, so every order is eventually acknowledged, and a retry never makes a second one.
func closedLoop(prefix string, workers int, stop chan struct{}) *loadResult {
	res := &loadResult{acked: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				deadline := time.Now().Add(90 * time.Second)
				for time.Now().Before(deadline) {
					code, p, err := placeOrder(key)
					if err == nil && code == http.StatusCreated {
						mu.Lock()
						res.acked[key] = p.ID
						res.ackedAt = append(res.ackedAt, time.Now())
						mu.Unlock()
						break
					}
					mu.Lock()
					res.failedAttempts++
					if res.firstFail.IsZero() {
						res.firstFail = time.Now()
					}
					res.lastFail = time.Now()
					mu.Unlock()
					time.Sleep(retryPause)
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// storedOnce checks that every acknowledged order is in MariaDB exactly once, under its key, and that no order
// of this load (prefix, in the customer's name) is there that was not acknowledged: a retry that made a second
// order, or an order stored without its key.
func storedOnce(t *testing.T, acked map[string]string, prefix string) {
	t.Helper()
	out := st.composeT(t, "exec", "-T", "mariadb", "mariadb", "--no-defaults", "--socket=/run/mysqld/mysqld.sock",
		"-uroot", "-N", "-e", fmt.Sprintf("SELECT COALESCE(k.idempotency_key, 'none'), o.id FROM pizza.orders o "+
			"LEFT JOIN pizza.idempotency_keys k ON k.order_id = o.id WHERE o.customer_name = 'Compose %s'", prefix))
	stored := map[string][]string{} // key → order IDs
	rows := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			stored[f[0]] = append(stored[f[0]], f[1])
			rows++
		}
	}
	for key, id := range acked {
		if got := stored[key]; len(got) != 1 || got[0] != id {
			t.Errorf("acknowledged order %s (key %s) stored as %v, want exactly once", id, key, got)
		}
	}
	for key, ids := range stored {
		if _, ok := acked[key]; !ok {
			t.Errorf("orders %v (key %s) stored but never acknowledged", ids, key)
		}
	}
	if rows != len(acked) {
		t.Errorf("%d orders stored for %d acknowledged", rows, len(acked))
	}
}

// runPrefix names one load's idempotency keys.
func runPrefix(name string) string { return fmt.Sprintf("%s%d", name, time.Now().UnixNano()) }

func TestOrderCrashComesBackAndLosesNothing(t *testing.T) {
	prefix := runPrefix("crash")
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt() // a failing test stops its load too
	var res *loadResult
	done := make(chan struct{})
	go func() { res = closedLoop(prefix, 4, stop); close(done) }()
	time.Sleep(3 * time.Second)

	restarts := func() int {
		return atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.RestartCount}}", st.container("order")))
	}
	before := restarts()
	// A crash, as the engine sees one: SIGKILL to the container's process. (`docker kill` would not do: the
	// engine takes it for an operator's stop and, by design, does not apply the restart policy.)
	pid := atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.State.Pid}}", st.container("order")))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill order's process %d: %v (the test runs as root on the engine's host)", pid, err)
	}
	killed := time.Now()
	var res2probe string
	deadline := time.Now().Add(2 * time.Minute)
	for restarts() == before {
		if time.Now().After(deadline) {
			t.Fatal("order's container did not come back by itself within 2 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
	back := time.Now()
	for {
		code, p, err := placeOrder(prefix + "-probe")
		if err == nil && code == http.StatusCreated {
			res2probe = p.ID
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("orders did not work again within 2 minutes of the crash")
		}
		time.Sleep(200 * time.Millisecond)
	}
	serving := time.Now()
	time.Sleep(3 * time.Second)
	halt()
	<-done
	outage := time.Duration(0)
	if !res.firstFail.IsZero() {
		outage = res.lastFail.Sub(res.firstFail)
	}
	t.Logf("crash of order: restarted after %v, orders work again after %v; %d orders acknowledged, %d failed attempts, "+
		"client-visible outage window %v", back.Sub(killed).Round(time.Millisecond), serving.Sub(killed).Round(time.Millisecond),
		len(res.acked), res.failedAttempts, outage.Round(time.Millisecond))
	if len(res.acked) == 0 {
		t.Fatal("no order was acknowledged")
	}
	// What the mechanism allows: attempts fail only while order is down, i.e. from the kill until orders work
	// again, plus one attempt already in flight then (bounded by the client's timeout); and a client retries a
	// failed attempt after retryPause, so it fails at most once per pause of that window, plus the first.
	if res.failedAttempts > 0 {
		if res.firstFail.Before(killed) {
			t.Errorf("an attempt failed %v before the crash", killed.Sub(res.firstFail).Round(time.Millisecond))
		}
		if late := res.lastFail.Sub(serving); late > st.http.Timeout {
			t.Errorf("an attempt failed %v after orders worked again, longer than a call may take (%v)", late.Round(time.Millisecond), st.http.Timeout)
		}
		if most := 4 * (int(outage/retryPause) + 1); res.failedAttempts > most {
			t.Errorf("%d failed attempts in an outage window of %v: 4 clients pausing %v can fail at most %d times",
				res.failedAttempts, outage.Round(time.Millisecond), retryPause, most)
		}
	}
	res.acked[prefix+"-probe"] = res2probe
	storedOnce(t, res.acked, prefix)
}

func TestRotationUnderLoadFailsNoOrder(t *testing.T) {
	prefix := runPrefix("rotate")
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt() // a failing test stops its load too
	var res *loadResult
	done := make(chan struct{})
	go func() { res = closedLoop(prefix, 4, stop); close(done) }()
	time.Sleep(2 * time.Second)
	// The runbook's database-credential rotation: every MySQL user of order is dropped.
	if _, err := st.meshctl("rotate", "db-creds"); err != nil {
		halt()
		<-done
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	halt()
	<-done
	t.Logf("rotate db-creds under load: %d orders acknowledged, %d failed attempts", len(res.acked), res.failedAttempts)
	if res.failedAttempts != 0 {
		t.Errorf("%d order attempts failed during the rotation, want 0", res.failedAttempts)
	}
	storedOnce(t, res.acked, prefix)
}

func TestStopAndRunAgainKeepsOrders(t *testing.T) {
	if len(kept) == 0 {
		t.Skip("no order was placed (an earlier test failed)")
	}
	t0 := time.Now()
	if out, err := st.cmd(5*time.Minute, "make", "-s", "stop-docker"); err != nil {
		t.Fatalf("make stop-docker: %v\n%s", err, tail(out, 30))
	}
	stopped := time.Since(t0)
	t1 := time.Now()
	if out, err := st.cmd(10*time.Minute, "make", "-s", "run-docker"); err != nil {
		t.Fatalf("make run-docker after stop-docker: %v\n%s", err, tail(out, 30))
	}
	t.Logf("make stop-docker took %v; make run-docker (warm: images and data cached) took %v",
		stopped.Round(time.Second), time.Since(t1).Round(time.Second))
	for _, p := range kept {
		req, _ := http.NewRequest(http.MethodGet, st.url("/pizza/"+p.ID), nil)
		req.Header.Set("X-Tracking-Token", p.TrackingToken)
		resp, err := st.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /pizza/%s after a restart of the stack: %s", p.ID, resp.Status)
		}
	}
}

// volumeFile reads one file out of a named volume through a stopped helper container (no shell is needed).
func volumeFile(t *testing.T, volume, path string) string {
	t.Helper()
	id := strings.TrimSpace(st.cmdT(t, "docker", "create", "-v", st.project+"_"+volume+":/v:ro",
		"pizzajoint/meshctl:"+imageTag()))
	defer st.cmd(time.Minute, "docker", "rm", "-f", id) //nolint:errcheck // best effort
	out := st.cmdT(t, "docker", "cp", id+":/v/"+path, "-")
	tr := tar.NewReader(strings.NewReader(out))
	if _, err := tr.Next(); err != nil {
		t.Fatalf("%s:%s: %v", volume, path, err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func imageTag() string {
	if v := os.Getenv("PIZZA_TAG"); v != "" {
		return v
	}
	return "dev"
}

func TestNoSecretInLogsOrInspect(t *testing.T) {
	secrets := map[string]string{
		"order role_id":        volumeFile(t, "order-creds", "role-id"),
		"order secret_id":      volumeFile(t, "order-creds", "secret-id"),
		"order consul token":   volumeFile(t, "order-creds", "consul-token"),
		"gateway secret_id":    volumeFile(t, "gateway-creds", "secret-id"),
		"gateway consul token": volumeFile(t, "gateway-creds", "consul-token"),
		"vault unseal key":     volumeFile(t, "vault-unseal", "unseal-key"),
		"vault operator token": volumeFile(t, "bootstrap-state", "vault/operator-token"),
		"order NATS seed":      volumeFile(t, "order-creds", "nats-seed"),
		"meshctl NATS seed":    volumeFile(t, "nats-users", "provisioner.seed"),
		"nats-1 consul token":  volumeFile(t, "nats-1-creds", "consul-token"),
	}
	agent := volumeFile(t, "order-agent-token", "token.hcl")
	if m := regexp.MustCompile(`agent = "([^"]+)"`).FindStringSubmatch(agent); m != nil {
		secrets["order agent token"] = m[1]
	} else {
		t.Error("order's agent token file holds no token")
	}
	if m := regexp.MustCompile(`encrypt = "([^"]+)"`).FindStringSubmatch(volumeFile(t, "order-agent-token", "gossip.hcl")); m != nil {
		secrets["gossip key"] = m[1]
	} else {
		t.Error("order's agent has no gossip key")
	}
	secrets["staff token"] = strings.TrimSpace(st.meshctlT(t, "token", "staff", "composetest-hygiene"))
	secrets["consul ui token"] = strings.TrimSpace(st.meshctlT(t, "token", "consul-ui"))
	for name, v := range secrets {
		if len(v) < 8 {
			t.Fatalf("%s is too short to look for (%q)", name, v)
		}
	}

	logs := st.composeT(t, "logs", "--no-color")
	ids := strings.Fields(st.composeT(t, "ps", "-a", "-q"))
	inspect := st.cmdT(t, "docker", append([]string{"inspect"}, ids...)...)
	var containers []struct {
		Name   string
		Args   []string
		Config struct{ Env, Cmd, Entrypoint []string }
	}
	if err := json.Unmarshal([]byte(inspect), &containers); err != nil {
		t.Fatal(err)
	}
	for name, v := range secrets {
		if strings.Contains(logs, v) {
			t.Errorf("%s appears in docker compose logs", name)
		}
		if strings.Contains(inspect, v) {
			t.Errorf("%s appears in docker inspect", name)
		}
	}
	// Anything shaped like a Vault token, or a password setting, in the logs or a container's configuration.
	tokenShape := regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}`)
	for _, m := range tokenShape.FindAllString(logs, 3) {
		t.Errorf("a Vault token appears in docker compose logs: %.12s…", m)
	}
	// An nkey user seed (base32, "SU…").
	for _, m := range regexp.MustCompile(`\bSU[A-Z2-7]{50,}`).FindAllString(logs+inspect, 3) {
		t.Errorf("a NATS seed appears in docker compose logs or inspect: %.6s…", m)
	}
	for _, c := range containers {
		argv := strings.Join(append(append([]string{}, c.Config.Cmd...), c.Args...), " ")
		if tokenShape.MatchString(argv) || tokenShape.MatchString(strings.Join(c.Config.Env, " ")) {
			t.Errorf("%s: a Vault token in its command or environment", c.Name)
		}
		if k := secretSetting(c.Config.Env); k != "" {
			t.Errorf("%s: %s holds a value, not a file's path", c.Name, k)
		}
	}
	t.Logf("looked for %d secrets in %d bytes of logs and %d containers' inspect output", len(secrets), len(logs), len(containers))
}

// secretSetting names a setting of env that looks like it holds a secret itself: a name with PASSWORD, TOKEN or
// SECRET whose value is neither a file's path (…_FILE=/path) nor a switch (true, false).
func secretSetting(env []string) string {
	re := regexp.MustCompile(`(?i)(PASSWORD|TOKEN|SECRET)`)
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		if re.MatchString(k) && v != "" && !strings.HasPrefix(v, "/") && v != "true" && v != "false" {
			return k
		}
	}
	return ""
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOnlyTheGatewayAndTheTwoUIsArePublished(t *testing.T) {
	var published []string
	for _, id := range strings.Fields(st.composeT(t, "ps", "-q")) {
		out := st.cmdT(t, "docker", "inspect", "-f",
			`{{.Name}}{{range $p, $b := .NetworkSettings.Ports}}{{range $b}} {{$p}}={{.HostIp}}:{{.HostPort}}{{end}}{{end}}`, id)
		f := strings.Fields(out)
		for _, p := range f[1:] {
			published = append(published, strings.TrimPrefix(f[0], "/"+st.project+"-")+" "+p)
		}
	}
	want := map[string]bool{
		fmt.Sprintf("gateway-pod-1 8443/tcp=127.0.0.1:%d", st.gatewayPort): true, // the test binds it to loopback
		fmt.Sprintf("consul-1-1 8501/tcp=127.0.0.1:%d", st.uiPort):         true,
		fmt.Sprintf("jaeger-pod-1 16686/tcp=127.0.0.1:%d", st.tracesPort):  true,
	}
	for _, p := range published {
		if !want[p] {
			t.Errorf("published: %s", p)
		}
		delete(want, p)
	}
	for p := range want {
		t.Errorf("not published: %s", p)
	}
}

func TestConsulUIOverHTTPSWithATokenLogin(t *testing.T) {
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://localhost:%d%s", st.uiPort, path), nil)
		if token != "" {
			req.Header.Set("X-Consul-Token", token)
		}
		resp, err := st.http.Do(req) // verifies the front's certificate against the stack's CA
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/ui/", ""); code != http.StatusOK {
		t.Errorf("GET /ui/ = %d, want 200 (the UI, which then asks for a token)", code)
	}
	if _, body := get("/v1/catalog/services", ""); strings.Contains(body, "order") {
		t.Errorf("an anonymous caller sees the services: %s", body)
	}
	token := strings.TrimSpace(st.meshctlT(t, "token", "consul-ui"))
	code, body := get("/v1/catalog/services", token)
	if code != http.StatusOK || !strings.Contains(body, `"order"`) || !strings.Contains(body, `"gateway-sidecar-proxy"`) {
		t.Errorf("with the UI token: %d %s", code, body)
	}
	if code, _ := get("/v1/acl/tokens", token); code != http.StatusForbidden {
		t.Errorf("the read-only UI token lists ACL tokens: %d", code)
	}
	if code, _ := get("/v1/agent/connect/ca/leaf/order", token); code != http.StatusForbidden {
		t.Errorf("the UI front passed a leaf certificate: %d", code)
	}
}

// A standby Vault node that crashes comes back sealed, and the unsealer unseals it (the active node's crash is
// TestVaultActiveNodeKilledUnderLoad).
func TestVaultCrashIsUnsealedAgain(t *testing.T) {
	victim := others(vaultLeader(t))[0]
	service := fmt.Sprintf("vault-%d", victim)
	before := crash(t, service)
	killed := time.Now()
	waitBack(t, service, before, killed.Add(3*time.Minute), func() bool { return vaultUnsealed(victim) })
	unsealed := time.Since(killed)
	code, _, err := placeOrder(runPrefix("after-vault"))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("POST /pizza after a Vault node's crash = %d, %v", code, err)
	}
	t.Logf("%s (a standby) crashed: back and unsealed after %v", service, unsealed.Round(100*time.Millisecond))
}
