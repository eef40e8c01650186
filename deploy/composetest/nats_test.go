package composetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/eventsource"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

// frame is the payload of one event a test client received.
type frame struct {
	EventID int64  `json:"event_id"`
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	at      time.Time
}

// framesOf decodes a source's events.
func framesOf(t *testing.T, src *eventsource.Source) []frame {
	t.Helper()
	var out []frame
	for _, f := range src.Frames() {
		var fr frame
		if err := json.Unmarshal([]byte(f.Data), &fr); err != nil {
			t.Fatalf("event %d: %v (%q)", f.ID, err, f.Data)
		}
		fr.at = f.At
		out = append(out, fr)
	}
	return out
}

// longestReconnect is the longest time from a connection's end (or a refusal) to the next connection answered.
func longestReconnect(src *eventsource.Source) time.Duration {
	connects := src.Connects()
	var longest time.Duration
	for _, d := range src.Drops() {
		for _, c := range connects {
			if c.After(d.At) {
				longest = max(longest, c.Sub(d.At))
				break
			}
		}
	}
	return longest
}

// longestGap is the longest time between two consecutive frames that arrived within [from, to].
func longestGap(frames []frame, from, to time.Time) time.Duration {
	var longest time.Duration
	for i := 1; i < len(frames); i++ {
		if frames[i].at.Before(from) || frames[i-1].at.After(to) {
			continue
		}
		longest = max(longest, frames[i].at.Sub(frames[i-1].at))
	}
	return longest
}

// eventLog reads order_events for the orders whose customer is named after prefix: order ID → event IDs in
// ID order, with each event's status.
func eventLog(t *testing.T, prefix string) (map[string][]int64, map[int64]string) {
	t.Helper()
	out := st.composeT(t, "exec", "-T", "mariadb", "mariadb", "--no-defaults", "--socket=/run/mysqld/mysqld.sock",
		"-uroot", "-N", "-e", fmt.Sprintf("SELECT e.order_id, e.id, e.status FROM pizza.order_events e "+
			"JOIN pizza.orders o ON o.id = e.order_id WHERE o.customer_name = 'Compose %s' ORDER BY e.id", prefix))
	byOrder, status := map[string][]int64{}, map[int64]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		id, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("order_events row %q: %v", line, err)
		}
		byOrder[f[0]] = append(byOrder[f[0]], id)
		status[id] = f[2]
	}
	return byOrder, status
}

var leaderRE = regexp.MustCompile(`leader (nats-[0-9])`)

// streamState is `meshctl nats-stream status` in a throw-away container of the nats-stream service.
func streamState(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(st.composeT(t, "run", "--rm", "--no-deps", "nats-stream", "nats-stream", "status"))
}

// kitchen moves the given orders along, one status change every pause, until each has reached its target.
// Changes goes out in a random order across the orders; it returns when all are done or ctx ends.
func kitchen(ctx context.Context, staff string, targets map[string][]string, pause time.Duration) (changes int, failed []string) {
	type step struct{ id, status string }
	queue := map[string][]string{}
	for id, steps := range targets {
		queue[id] = slices.Clone(steps)
	}
	ids := make([]string, 0, len(queue))
	for id := range queue {
		ids = append(ids, id)
	}
	for len(ids) > 0 && ctx.Err() == nil {
		i := rand.IntN(len(ids))
		id := ids[i]
		next := step{id, queue[id][0]}
		queue[id] = queue[id][1:]
		if len(queue[id]) == 0 {
			ids = slices.Delete(ids, i, i+1)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.url("/staff/api/orders/"+next.id+"/status"),
			strings.NewReader(`{"status":"`+next.status+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+staff)
		resp, err := st.http.Do(req)
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s → %s: %v", next.id, next.status, err))
		case resp.StatusCode != http.StatusOK:
			failed = append(failed, fmt.Sprintf("%s → %s: %s", next.id, next.status, resp.Status))
		default:
			changes++
		}
		if resp != nil {
			resp.Body.Close()
		}
		time.Sleep(pause)
	}
	return changes, failed
}

// The stream's leader among three NATS servers is killed with SIGKILL while 4 clients order, a kitchen moves
// orders along, and 1,000 customer streams and 5 staff streams are open. No order fails (the outbox holds the
// events), and at the end every customer stream holds exactly its order's events in order, and every staff
// stream exactly the events of every order of the test: no gap, no repeat. The log says what each kind of
// client saw of the outage.
func TestNATSServerCrashUnderLoadLosesNoEvent(t *testing.T) {
	const customers, staffStreams = 1000, 5
	prefix := runPrefix("natscrash")
	state := streamState(t)
	m := leaderRE.FindStringSubmatch(state)
	if m == nil || !strings.Contains(state, "3 replicas") {
		t.Fatalf("stream state %q: want 3 replicas and a leader", state)
	}
	victim := m[1]
	t.Logf("before: %s", state)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamClient := &http.Client{Transport: st.http.Transport} // no overall timeout: a stream stays open
	// follow opens a stream as a browser's EventSource would and waits for its first connection.
	follow := func(url string, header http.Header, ends bool) (*eventsource.Source, error) {
		cfg := eventsource.Config{HTTP: streamClient, URL: url, Header: header, Retry: 500 * time.Millisecond}
		if ends { // a customer's stream ends after DELIVERED or CANCELLED
			cfg.Last = func(f eventsource.Frame) bool {
				return strings.Contains(f.Data, `"status":"DELIVERED"`) || strings.Contains(f.Data, `"status":"CANCELLED"`)
			}
		}
		src := eventsource.Follow(ctx, cfg)
		for deadline := time.Now().Add(30 * time.Second); len(src.Connects()) == 0; {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("stream %s did not open within 30 s (drops %v)", url, src.Drops())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return src, nil
	}

	// Staff streams first: from now on they must see every event of the test's orders.
	staff := strings.TrimSpace(st.meshctlT(t, "token", "staff", "natscrash"))
	boards := make([]*eventsource.Source, staffStreams)
	for i := range boards {
		var err error
		if boards[i], err = follow(st.url("/staff/api/events"), http.Header{"Authorization": {"Bearer " + staff}}, false); err != nil {
			t.Fatal(err)
		}
	}

	// The orders the kitchen moves, each with its own customer stream (opened in groups of 50).
	orders := make([]placed, customers)
	var pmu sync.Mutex
	var perr []string
	var pw sync.WaitGroup
	for w := range 8 {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := w; i < customers; i += 8 {
				code, p, err := placeOrder(fmt.Sprintf("%s-k-%d", prefix, i))
				if err != nil || code != http.StatusCreated {
					pmu.Lock()
					perr = append(perr, fmt.Sprintf("order %d: %d %v", i, code, err))
					pmu.Unlock()
					continue
				}
				orders[i] = p
			}
		}()
	}
	pw.Wait()
	if len(perr) > 0 {
		t.Fatalf("placing the kitchen's orders: %d failed, first %s", len(perr), perr[0])
	}
	customersF := make([]*eventsource.Source, customers)
	for g := 0; g < customers; g += 50 {
		var gw sync.WaitGroup
		errs := make([]error, customers)
		for i := g; i < min(g+50, customers); i++ {
			gw.Add(1)
			go func() {
				defer gw.Done()
				customersF[i], errs[i] = follow(st.url("/pizza/"+orders[i].ID+"/events?token="+orders[i].TrackingToken), nil, true)
			}()
		}
		gw.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d customer streams and %d staff streams open", customers, staffStreams)

	// A quarter go to DELIVERED (their streams end), the others part of the way.
	lifecycle := []string{"ACCEPTED", "BAKING", "OUT_FOR_DELIVERY", "DELIVERED"}
	targets := map[string][]string{}
	for i, o := range orders {
		targets[o.ID] = lifecycle[:1+i%2]
		if i%4 == 0 {
			targets[o.ID] = lifecycle
		}
	}

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt()
	var res *loadResult
	loadDone := make(chan struct{})
	go func() { res = closedLoop(prefix, 4, stop); close(loadDone) }()
	type kitchenResult struct {
		changes int
		failed  []string
	}
	kitchenDone := make(chan kitchenResult, 1)
	go func() {
		c, f := kitchen(ctx, staff, targets, 20*time.Millisecond)
		kitchenDone <- kitchenResult{c, f}
	}()
	time.Sleep(5 * time.Second)

	// A crash, as the engine sees one (see TestOrderCrashComesBackAndLosesNothing).
	restarts := func() int {
		return atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.RestartCount}}", st.container(victim)))
	}
	before := restarts()
	pid := atoi(t, st.cmdT(t, "docker", "inspect", "-f", "{{.State.Pid}}", st.container(victim)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s's process %d: %v", victim, pid, err)
	}
	killed := time.Now()
	deadline := killed.Add(2 * time.Minute)
	for restarts() == before {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come back by itself within 2 minutes", victim)
		}
		time.Sleep(500 * time.Millisecond)
	}
	back := time.Since(killed)
	for strings.TrimSpace(st.cmdT(t, "docker", "inspect", "-f", "{{.State.Health.Status}}", st.container(victim))) != "healthy" {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become healthy (current with the cluster) within 2 minutes", victim)
		}
		time.Sleep(500 * time.Millisecond)
	}
	healthy := time.Since(killed)
	time.Sleep(5 * time.Second)
	halt()
	<-loadDone
	kr := <-kitchenDone
	if len(kr.failed) > 0 {
		t.Errorf("%d of the kitchen's status changes failed, first: %s", len(kr.failed), kr.failed[0])
	}
	if res.failedAttempts > 0 {
		t.Errorf("%d order attempts failed while a NATS server was down (first %v after the kill); the outbox should hold "+
			"their events", res.failedAttempts, res.firstFail.Sub(killed).Round(time.Millisecond))
	}
	t.Logf("%s (the stream's leader) killed: restarted after %v, healthy after %v; %d orders acknowledged by 4 clients, "+
		"%d failed attempts; %d status changes", victim, back.Round(time.Millisecond), healthy.Round(time.Millisecond),
		len(res.acked), res.failedAttempts, kr.changes)

	// Every stream catches up with the table.
	byOrder, statusOf := eventLog(t, prefix)
	all := 0
	for _, ids := range byOrder {
		all += len(ids)
	}
	caughtUp := func() bool {
		for i, f := range customersF {
			if len(f.Frames()) < len(byOrder[orders[i].ID]) {
				return false
			}
		}
		for _, b := range boards {
			if n := countOf(t, b, byOrder); n < all {
				return false
			}
		}
		return true
	}
	for wait := time.Now().Add(time.Minute); !caughtUp() && time.Now().Before(wait); {
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(time.Second) // a repeat arriving late shows too
	cancel()

	var gaps []time.Duration
	droppedStreams := 0
	for i, f := range customersF {
		frames := framesOf(t, f)
		if len(f.Drops()) > 0 {
			droppedStreams++
			gaps = append(gaps, longestReconnect(f))
		}
		want := byOrder[orders[i].ID]
		if got := eventIDs(frames); !slices.Equal(got, want) {
			t.Errorf("customer stream of %s got events %v, want %v (statuses %v)", orders[i].ID, got, want, statuses(want, statusOf))
		}
	}
	for i, b := range boards {
		frames := framesOf(t, b)
		if len(b.Drops()) > 0 {
			droppedStreams++
			gaps = append(gaps, longestReconnect(b))
		}
		// The outage as this board saw it: events flow all along (orders and the kitchen), so the longest
		// silence around the kill is how long its events stopped.
		t.Logf("staff stream %d: %d frames, %d reconnects, longest silence from 2 s before the kill to 2 s after %s "+
			"was healthy: %v", i, len(frames), len(b.Reconnects()), victim,
			longestGap(frames, killed.Add(-2*time.Second), killed.Add(healthy+2*time.Second)).Round(time.Millisecond))
		got := map[string][]int64{}
		for _, fr := range frames {
			if _, ours := byOrder[fr.OrderID]; ours {
				got[fr.OrderID] = append(got[fr.OrderID], fr.EventID)
			}
		}
		for id, want := range byOrder {
			if !slices.Equal(got[id], want) {
				t.Errorf("staff stream %d got events %v of order %s, want %v", i, got[id], id, want)
			}
		}
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	longest := time.Duration(0)
	if len(gaps) > 0 {
		longest = gaps[len(gaps)-1]
	}
	t.Logf("streams: %d events in the table for %d orders; %d of %d streams dropped and reconnected, the longest "+
		"reconnect took %v", all, len(byOrder), droppedStreams, customers+staffStreams, longest.Round(time.Millisecond))
	t.Logf("after: %s", streamState(t))
}

// countOf counts the frames of a staff stream that belong to the test's orders.
func countOf(t *testing.T, src *eventsource.Source, byOrder map[string][]int64) int {
	n := 0
	for _, fr := range framesOf(t, src) {
		if _, ok := byOrder[fr.OrderID]; ok {
			n++
		}
	}
	return n
}

func eventIDs(frames []frame) []int64 {
	ids := make([]int64, 0, len(frames))
	for _, fr := range frames {
		ids = append(ids, fr.EventID)
	}
	return ids
}

func statuses(ids []int64, statusOf map[int64]string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, statusOf[id])
	}
	return out
}

// A container on the stack's network that runs a NATS server and routes to nats-1 never joins the cluster:
// routes are mutual TLS with certificates from nats-routes-ca. One rogue speaks plain routes, the other TLS with
// a certificate of its own CA for the name nats-1 (skipping verification itself, so that it presents it). Had
// either joined, it would learn the JetStream leader and answer /healthz. Seen red by hand: with the tls block
// taken out of nats.conf, the plain rogue logged "JetStream cluster new metadata leader" within seconds.
func TestRogueNATSServerOnTheNetworkNeverRoutes(t *testing.T) {
	// The rogues run as NATS's user: a folder they can enter (t.TempDir's parent is owner-only).
	dir, err := os.MkdirTemp("", "rogue-nats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cert, key := selfSignedPEM(t, "nats-1")
	files := map[string]string{"cert.pem": cert, "key.pem": key,
		"plain.conf": rogueConfig("rogue-plain", ""),
		"tls.conf":   rogueConfig("rogue-tls", "tls { cert_file: /rogue/cert.pem, key_file: /rogue/key.pem, insecure: true }"),
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 10400, 10400); err != nil {
			t.Fatalf("chown %s: %v (the test runs as root on the engine's host)", path, err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var rogues []string
	for _, conf := range []string{"plain", "tls"} {
		name := st.project + "-rogue-nats-" + conf
		st.cmdT(t, "docker", "run", "-d", "--name", name, "--network", st.project+"_mesh", "-v", dir+":/rogue:ro",
			"pizzajoint/nats:"+imageTag(), "-c", "/rogue/"+conf+".conf")
		t.Cleanup(func() { _, _ = st.cmd(time.Minute, "docker", "rm", "-f", "-v", name) })
		rogues = append(rogues, name)
	}
	time.Sleep(15 * time.Second) // a route that is let in brings the leader's name within a few seconds
	for _, name := range rogues {
		// NATS logs to stderr.
		out, _ := exec.Command("docker", "logs", name).CombinedOutput()
		logs := string(out)
		if strings.Contains(logs, "metadata leader") {
			t.Errorf("%s joined the cluster:\n%s", name, tail(logs, 20))
		}
		if !strings.Contains(logs, "Router connection closed") {
			t.Errorf("%s never had a route closed on it (did it try at all?):\n%s", name, tail(logs, 20))
		}
		if _, err := st.cmd(time.Minute, "docker", "exec", name, "/usr/local/bin/meshctl", "probe", "http://127.0.0.1:8222/healthz"); err == nil {
			t.Errorf("%s is healthy: it found the cluster's JetStream leader", name)
		}
	}
	if state := streamState(t); !strings.Contains(state, "3 replicas") || strings.Contains(state, "rogue") {
		t.Errorf("stream state after the rogues: %s", state)
	}
}

// rogueConfig is a JetStream server that routes to nats-1, with routeTLS in its cluster block.
func rogueConfig(name, routeTLS string) string {
	return fmt.Sprintf(`server_name: %s
http: 127.0.0.1:8222
jetstream { store_dir: /nats/data }
cluster {
  name: pizza
  listen: 0.0.0.0:6222
  %s
  routes: [ nats-route://nats-1:6222 ]
}
`, name, routeTLS)
}

// selfSignedPEM is a certificate and key for host, signed by itself.
func selfSignedPEM(t *testing.T, host string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// `deploy/docker/run.sh rotate-nats-creds` while 4 clients order and a staff stream follows: no order fails,
// order-1 moves to its new key, the servers end up admitting only the new key, and the staff stream gets every
// order's CREATED event once (it resumes with Last-Event-ID if its connection retired), and order's connection
// is never cut: it leaves the previous key itself. Seen red with the reload after `nats-key rotate` left out
// ("order's NATS connection was cut during the rotation"). Without the `nats-key unused` waits it stays green
// here: order moves within its 1 s seed check, before the retire's container starts; provision's
// TestNATSKeyUnusedOnEachServerThenRetire covers the wait.
func TestNATSCredsRotationUnderLoad(t *testing.T) {
	publicKey := func() string {
		t.Helper()
		pub, err := natsauth.PublicKeyOf([]byte(volumeFile(t, "order-creds", "nats-seed")))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	before := publicKey()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	staff := strings.TrimSpace(st.meshctlT(t, "token", "staff", "natsrotate"))
	board := eventsource.Follow(ctx, eventsource.Config{HTTP: &http.Client{Transport: st.http.Transport},
		URL: st.url("/staff/api/events"), Header: http.Header{"Authorization": {"Bearer " + staff}}, Retry: 500 * time.Millisecond})
	for deadline := time.Now().Add(30 * time.Second); len(board.Connects()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the staff stream did not open (drops %v)", board.Drops())
		}
	}

	prefix := runPrefix("natsrotate")
	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	defer halt()
	var res *loadResult
	done := make(chan struct{})
	go func() { res = closedLoop(prefix, 4, stop); close(done) }()
	time.Sleep(2 * time.Second)
	t0 := time.Now()
	out, err := st.cmd(3*time.Minute, "deploy/docker/run.sh", "rotate-nats-creds")
	took := time.Since(t0)
	time.Sleep(3 * time.Second)
	halt()
	<-done
	if err != nil {
		t.Fatalf("rotate-nats-creds: %v\n%s", err, out)
	}
	after := publicKey()
	t.Logf("rotate-nats-creds under load took %v: %d orders acknowledged, %d failed attempts; the staff stream "+
		"reconnected %d times", took.Round(time.Millisecond), len(res.acked), res.failedAttempts, len(board.Reconnects()))
	if res.failedAttempts != 0 {
		t.Errorf("%d order attempts failed during the rotation, want 0", res.failedAttempts)
	}
	if after == before {
		t.Fatal("order-1's NATS key did not change")
	}
	auth := volumeFile(t, "nats-auth", "auth.conf")
	if strings.Contains(auth, before) || !strings.Contains(auth, after) {
		t.Errorf("the servers' authorization holds the previous key %v, the new one %v; want only the new one",
			strings.Contains(auth, before), strings.Contains(auth, after))
	}
	logs := st.composeT(t, "logs", "--no-color", "--since", t0.UTC().Format(time.RFC3339Nano), "order")
	if !strings.Contains(logs, "NATS connection with the previous key closed") {
		t.Error("order's log does not say it left its previous key")
	}
	// order leaves the previous key itself; a server that dropped it first would have cut the connection.
	if strings.Contains(logs, "NATS disconnected") {
		t.Errorf("order's NATS connection was cut during the rotation:\n%s", tail(logs, 20))
	}

	// Every order of the load: its CREATED event on the staff stream, once.
	byOrder, _ := eventLog(t, prefix)
	want := map[int64]bool{}
	for _, ids := range byOrder {
		for _, id := range ids {
			want[id] = true
		}
	}
	var seen map[int64]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		seen = map[int64]int{}
		for _, fr := range framesOf(t, board) {
			if want[fr.EventID] {
				seen[fr.EventID]++
			}
		}
		if len(seen) == len(want) || time.Now().After(deadline) {
			break
		}
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("event %d reached the staff stream %d times, want once", id, seen[id])
		}
	}
	if len(want) != len(res.acked) {
		t.Errorf("%d events in the table for %d acknowledged orders", len(want), len(res.acked))
	}
	storedOnce(t, res.acked, prefix)
}
