package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

// make rotate-nats-creds under the closed-loop load while a staff stream follows every order: no order fails,
// the stream ends as its order replica leaves its previous connection and resumes with Last-Event-ID, getting
// every order's CREATED exactly once. Afterwards the server's authorization holds only the new keys, no
// connection uses an old one, and a client with an old seed is refused.
func TestNATSCredsRotation(t *testing.T) {
	instances := []string{"order-1", "order-2"}
	oldSeeds := map[string]string{} // instance → a copy of the seed it held before the rotation
	oldKeys := map[string]string{}
	for _, id := range instances {
		seed, pub := instanceSeed(t, id)
		file := filepath.Join(t.TempDir(), id+".nk")
		if err := os.WriteFile(file, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		oldSeeds[id], oldKeys[id] = file, pub
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	f := followAll(ctx, t)
	// The stream is in place once it carries an order placed after it opened.
	probe, _ := placeTracked(t)
	if err := f.waitFor(map[string]bool{probe: true}, 20*time.Second); err != nil {
		t.Fatalf("the staff stream before the rotation: %v", err)
	}

	const prefix = "rot-nats-creds"
	l := startLoad(t, prefix, 4)
	time.Sleep(2 * time.Second)
	start := time.Now()
	out, err := stack.Script(5*time.Minute, "rotate.sh", "nats-creds")
	took := time.Since(start)
	if err != nil {
		l.stop()
		t.Fatalf("rotate.sh nats-creds: %v\n%s", err, out)
	}
	time.Sleep(4 * time.Second)
	r := l.stop()
	stored := checkStoredOnce(t, r, prefix)
	if r.Acked == 0 {
		t.Fatal("no order was acknowledged")
	}
	if r.Failures > 0 {
		t.Errorf("%d failures during the NATS key rotation; first: %v", r.Failures, r.FirstFailures)
	}

	want := map[string]bool{probe: true}
	for _, id := range r.IDs {
		want[id] = true
	}
	if err := f.waitFor(want, 60*time.Second); err != nil {
		t.Errorf("the staff stream after the rotation: %v", err)
	}
	cancel()
	seen, ends := f.result() // waits for the follower to stop
	if ends == 0 {
		t.Error("the staff stream never ended: its replica kept serving it from the previous connection")
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("order %s: its CREATED came %d times over the stream's reconnections", id, n)
		}
	}
	t.Logf("rotate-nats-creds took %s; sent %d, acknowledged %d, in MySQL %d, failures %d; the staff stream got %d CREATED over %d reconnections",
		took.Round(time.Millisecond), r.Sent, r.Acked, stored, r.Failures, len(seen), ends)

	// Each replica left its previous key before meshctl dropped it (the wait never ran out).
	meshctlLog, err := os.ReadFile(filepath.Join(stack.Dir, "logs", "meshctl.log"))
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, line := range strings.Split(string(meshctlLog), "\n") {
		var rec struct {
			Msg      string `json:"msg"`
			Instance string `json:"instance"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "no connection uses the previous NATS key any more" {
			left[rec.Instance] = true
		}
	}
	for _, id := range instances {
		if !left[id] {
			t.Errorf("meshctl.log does not say that %s left its previous key before it was dropped", id)
		}
	}
	if strings.Contains(string(meshctlLog), "connections still use the previous NATS key after the wait") {
		t.Error("meshctl dropped a previous key that connections still used")
	}

	auth, err := os.ReadFile(filepath.Join(stack.Dir, "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", stack.Ports.NATS)
	for _, id := range instances {
		_, pub := instanceSeed(t, id)
		if pub == oldKeys[id] {
			t.Errorf("%s holds the same key as before the rotation", id)
		}
		if !strings.Contains(string(auth), pub) {
			t.Errorf("the authorization does not admit %s's new key", id)
		}
		if strings.Contains(string(auth), oldKeys[id]) {
			t.Errorf("the authorization still admits %s's previous key", id)
		}
		if n := natstest.Connections(t, fmt.Sprintf("http://127.0.0.1:%d", stack.Ports.NATSMonitor), oldKeys[id]); n != 0 {
			t.Errorf("%d connections still use %s's previous key", n, id)
		}
		if n := natstest.Connections(t, fmt.Sprintf("http://127.0.0.1:%d", stack.Ports.NATSMonitor), pub); n == 0 {
			t.Errorf("no connection uses %s's new key", id)
		}
		key, err := nats.NkeyOptionFromSeed(oldSeeds[id])
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(url, key, nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Errorf("a client with %s's previous seed connected", id)
		} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization Violation") {
			t.Errorf("a client with %s's previous seed: %v, want an authorization violation", id, err)
		}
	}
}

// instanceSeed reads the NATS seed meshctl delivered into the instance's folder, and its public key.
func instanceSeed(t *testing.T, id string) (seed []byte, pub string) {
	t.Helper()
	seed, err := os.ReadFile(filepath.Join(stack.Dir, "credentials", id, "nats-seed"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err = natsauth.PublicKeyOf(seed)
	if err != nil {
		t.Fatalf("%s's NATS seed: %v", id, err)
	}
	remember(strings.TrimSpace(string(seed))) // no log may hold it
	return seed, pub
}

// allFollower follows the staff stream of every order as EventSource does: when it ends it reconnects with its
// last event ID. It counts each order's CREATED.
type allFollower struct {
	stopped chan struct{}
	mu      sync.Mutex
	created map[string]int
	ends    int // connections that ended (and were resumed)
}

func followAll(ctx context.Context, t *testing.T) *allFollower {
	t.Helper()
	f := &allFollower{created: map[string]int{}, stopped: make(chan struct{})}
	client := &http.Client{Transport: stack.HTTP.Transport.(*http.Transport).Clone()}
	bearer := map[string]string{"Authorization": "Bearer " + staff(t)}
	s, status := openStream(t, ctx, client, stack.GatewayURL+"/staff/api/events", bearer, 0)
	if status != http.StatusOK {
		t.Fatalf("staff events: %d", status)
	}
	go func() {
		defer close(f.stopped)
		var last int64
		for ctx.Err() == nil {
			f.read(ctx, s, &last)
			s.close()
			if ctx.Err() != nil {
				return
			}
			f.mu.Lock()
			f.ends++
			f.mu.Unlock()
			// Reconnect as EventSource does, after a pause, until the server takes the stream again.
			for ctx.Err() == nil {
				time.Sleep(200 * time.Millisecond)
				var err error
				s, status, err = tryOpenStream(t, ctx, client, stack.GatewayURL+"/staff/api/events", bearer, last)
				if err == nil && status == http.StatusOK {
					break
				}
			}
		}
	}()
	return f
}

// read takes the stream's events until it ends.
func (f *allFollower) read(ctx context.Context, s *stream, last *int64) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.events:
			f.take(e, last)
		case <-s.done:
			for { // the reader queues its events before it reports the end
				select {
				case e := <-s.events:
					f.take(e, last)
				default:
					return
				}
			}
		}
	}
}

func (f *allFollower) take(e event, last *int64) {
	*last = e.Resume
	if e.Status != "CREATED" {
		return
	}
	f.mu.Lock()
	f.created[e.OrderID]++
	f.mu.Unlock()
}

// waitFor waits until the stream carried the CREATED of every order in want.
func (f *allFollower) waitFor(want map[string]bool, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		f.mu.Lock()
		missing := 0
		for id := range want {
			if f.created[id] == 0 {
				missing++
			}
		}
		f.mu.Unlock()
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d orders' CREATED not seen within %s", missing, len(want), within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// result waits for the follower to stop (its context ended), then returns what it counted.
func (f *allFollower) result() (map[string]int, int) {
	<-f.stopped
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, f.ends
}
