package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Both replicas take orders: the gateway's sidecar balances across the healthy instances in Consul. The mesh
// is L4, so it balances connections, not requests: concurrent customers make the gateway open several
// upstream connections, and those spread over the replicas (at random: 16 all on one replica is 1 in 32,768).
func TestBothReplicasServeOrders(t *testing.T) {
	l := startLoad(t, fmt.Sprintf("spread-%d", time.Now().UnixNano()), 16)
	time.Sleep(2 * time.Second)
	r := l.stop()
	if r.Acked == 0 || r.Failures > 0 {
		t.Fatalf("load: %d acknowledged, %d failures %v", r.Acked, r.Failures, r.FirstFailures)
	}
	// Only this test's requests count: the replicas' logs also hold every earlier test's. The request ID the
	// gateway answered with is the one order logged.
	ours := map[string]bool{}
	for _, id := range r.RequestIDs {
		ours[id] = true
	}
	for _, name := range []string{"order", "order-2"} {
		f, err := os.Open(filepath.Join(stack.Dir, "logs", name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		took := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Method, Path string
				Status       int
				RequestID    string `json:"request_id"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Method == "POST" && line.Path == "/orders" &&
				line.Status == http.StatusCreated && ours[line.RequestID] {
				took++
			}
		}
		f.Close()
		if took == 0 {
			t.Errorf("replica %s took none of this test's %d orders", name, r.Acked)
		}
		t.Logf("replica %s took %d of this test's %d orders", name, took, r.Acked)
	}
}

// An order replica stops while customers follow an order. Streams it served end; reconnecting with the last
// event ID reaches the other replica and gets exactly what happened meanwhile. Orders keep being taken.
func TestOrderReplicaStopLosesNothing(t *testing.T) {
	id, token := placeTracked(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Several customers' streams on new connections, so the gateway's sidecar spreads them over the replicas
	// (it picks one at random per connection: all ten on the other replica is a 1 in 1024 chance).
	const followers = 10
	type follower struct {
		s           *stream
		seen        []string
		last        int64
		reconnected bool
	}
	fs := make([]*follower, followers)
	for i := range fs {
		client := &http.Client{Transport: stack.HTTP.Transport.(*http.Transport).Clone()}
		s, status := openStream(t, ctx, client, trackURL(id, token), nil, 0)
		if status != http.StatusOK {
			t.Fatalf("follower %d: %d", i, status)
		}
		e := s.next(t, 10*time.Second)
		fs[i] = &follower{s: s, seen: []string{e.Status}, last: e.Resume}
	}

	pid, err := stack.SupervisorPid("order")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The kitchen moves the order only once replica 1 is gone: a stream it served must come back through the
	// other replica to see them (events reach open streams within milliseconds, well inside a stop's drain).
	waitExited(t, pid)
	defer func() {
		if out, err := stack.Script(5*time.Minute, "stack.sh", "start"); err != nil {
			t.Errorf("restart replica 1: %v\n%s", err, out)
		}
	}()

	// The kitchen goes on through the gateway: the remaining replica takes it.
	for _, st := range []string{"ACCEPTED", "BAKING"} {
		eventually(t, 30*time.Second, func() error {
			req, _ := http.NewRequest("POST", stack.GatewayURL+"/staff/api/orders/"+id+"/status", strings.NewReader(`{"status":"`+st+`"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+staff(t))
			resp, err := stack.HTTP.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusConflict { // 409: a retry of a change that went through
				return fmt.Errorf("move to %s: %d", st, resp.StatusCode)
			}
			return nil
		})
	}
	for i := range 10 { // and customers keep ordering, retrying with their key as clients do
		key := fmt.Sprintf("during-replica-stop-%d-%d", time.Now().UnixNano(), i)
		eventually(t, 30*time.Second, func() error {
			if status, _, err := placeOrder(t, key, orderBody("During replica stop")); status != http.StatusCreated {
				return fmt.Errorf("POST /pizza: %d %v", status, err)
			}
			return nil
		})
	}

	reconnected := 0
	for i, f := range fs {
		for len(f.seen) < 3 {
			select {
			case e := <-f.s.events:
				f.seen, f.last = append(f.seen, e.Status), e.Resume
			case <-f.s.done: // its replica went away: come back where it left off, as EventSource does
				f.reconnected = true
				f.s.close()
				time.Sleep(200 * time.Millisecond)
				var status int
				eventually(t, 30*time.Second, func() error {
					if f.s, status = openStream(t, ctx, stack.HTTP, trackURL(id, token), nil, f.last); status != http.StatusOK {
						return fmt.Errorf("follower %d reconnecting: %d", i, status)
					}
					return nil
				})
			case <-time.After(20 * time.Second):
				t.Fatalf("follower %d saw %v and nothing more", i, f.seen)
			}
		}
		f.s.close()
		if f.reconnected {
			reconnected++
		}
		if got := strings.Join(f.seen, ","); got != "CREATED,ACCEPTED,BAKING" {
			t.Errorf("follower %d saw %s, want CREATED,ACCEPTED,BAKING", i, got)
		}
	}
	t.Logf("%d of %d followers were on the stopped replica and reconnected", reconnected, followers)
	if reconnected == 0 {
		t.Error("no follower was on the stopped replica: the test proved nothing")
	}
}
