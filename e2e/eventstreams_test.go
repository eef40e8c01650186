package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/eventsource"
)

// The event path's guarantees, from the order_events outbox through NATS JetStream and the gateway to
// EventSource-like clients that reconnect with Last-Event-ID: every event reaches every stream that wants it,
// once and in order, through a NATS outage and with a thousand streams open under load.

// streamRetry is the clients' reconnection time (EventSource's default is a few seconds).
const streamRetry = time.Second

// streamClient returns an HTTP client for many long-lived streams: no cap on connections.
func streamClient() *http.Client {
	tr := stack.HTTP.Transport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = 0
	return &http.Client{Transport: tr} // no timeout: a stream lasts as long as it is followed
}

// followCustomer follows one order's stream as the tracking page does, until its final status.
func followCustomer(ctx context.Context, client *http.Client, id, token string) *eventsource.Source {
	return eventsource.Follow(ctx, eventsource.Config{HTTP: client, URL: stack.GatewayURL + "/pizza/" + id + "/events",
		Header: http.Header{"X-Tracking-Token": {token}}, Retry: streamRetry,
		Last: func(f eventsource.Frame) bool {
			e, err := decodeFrame(f)
			return err == nil && (e.Status == "DELIVERED" || e.Status == "CANCELLED")
		}})
}

// followStaff follows every order's events as the staff board does.
func followStaff(ctx context.Context, client *http.Client, bearer string) *eventsource.Source {
	return eventsource.Follow(ctx, eventsource.Config{HTTP: client, URL: stack.GatewayURL + "/staff/api/events",
		Header: http.Header{"Authorization": {"Bearer " + bearer}}, Retry: streamRetry})
}

func decodeFrame(f eventsource.Frame) (event, error) {
	var e event
	if err := json.Unmarshal([]byte(f.Data), &e); err != nil {
		return e, fmt.Errorf("frame %d: %q: %w", f.ID, f.Data, err)
	}
	e.Resume = f.ID
	return e, nil
}

// awaitConnected waits until every source was answered 200 once (or already stopped).
func awaitConnected(t *testing.T, within time.Duration, sources ...*eventsource.Source) {
	t.Helper()
	eventually(t, within, func() error {
		waiting := 0
		for _, s := range sources {
			select {
			case <-s.Done():
				continue
			default:
			}
			if len(s.Connects()) == 0 {
				waiting++
			}
		}
		if waiting > 0 {
			return fmt.Errorf("%d of %d streams not open yet", waiting, len(sources))
		}
		return nil
	})
}

// eventRow is a row of order_events.
type eventRow struct {
	ID      int64
	OrderID string
	Status  string
}

// eventRows reads order_events for the orders placed under the customer names given (a test's orders), in ID
// order, and by order.
func eventRows(t *testing.T, names ...string) ([]eventRow, map[string][]eventRow) {
	t.Helper()
	q := `SELECT e.id, e.order_id, e.status FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE o.customer_name IN (?` + strings.Repeat(", ?", len(names)-1) + `) ORDER BY e.id`
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	rows, err := stack.Observer.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all []eventRow
	byOrder := map[string][]eventRow{}
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(&r.ID, &r.OrderID, &r.Status); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
		byOrder[r.OrderID] = append(byOrder[r.OrderID], r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return all, byOrder
}

// customerMismatch compares one order's stream with its rows: the same events (ID, order, status), in order,
// each once, and SSE ids that only grow across reconnects.
func customerMismatch(orderID string, frames []eventsource.Frame, rows []eventRow) error {
	var got, want []string
	var lastSeq int64
	for _, f := range frames {
		e, err := decodeFrame(f)
		if err != nil {
			return err
		}
		if f.ID <= lastSeq {
			return fmt.Errorf("SSE id %d after %d: a repeat", f.ID, lastSeq)
		}
		lastSeq = f.ID
		got = append(got, fmt.Sprintf("%d:%s:%s", e.ID, e.OrderID, e.Status))
		if e.OrderID != orderID || len(got) > len(rows) {
			break // wrong already: a stream of every order's events would take long to read in full
		}
	}
	for _, r := range rows {
		want = append(want, fmt.Sprintf("%d:%s:%s", r.ID, r.OrderID, r.Status))
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("order %s: stream got %v, order_events has %v", orderID, got, want)
	}
	return nil
}

// staffMismatch compares a staff stream with the rows of the test's orders: every row's event exactly once,
// each order's events in ID order, and SSE ids that only grow across reconnects. Events of other orders (the
// staff see every order) are left out.
func staffMismatch(frames []eventsource.Frame, rows []eventRow, byOrder map[string][]eventRow) error {
	want := make(map[int64]eventRow, len(rows))
	for _, r := range rows {
		want[r.ID] = r
	}
	seen := map[int64]int{}
	lastOfOrder := map[string]int64{}
	var lastSeq int64
	var problems []string
	note := func(format string, args ...any) {
		if len(problems) < 8 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, f := range frames {
		if f.ID <= lastSeq {
			note("SSE id %d after %d", f.ID, lastSeq)
		}
		lastSeq = max(lastSeq, f.ID)
		e, err := decodeFrame(f)
		if err != nil {
			return err
		}
		if _, ours := byOrder[e.OrderID]; !ours {
			continue
		}
		seen[e.ID]++
		if r, ok := want[e.ID]; !ok {
			note("event %d (%s %s) is not in order_events", e.ID, e.OrderID, e.Status)
		} else if r.OrderID != e.OrderID || r.Status != e.Status {
			note("event %d is %s %s, order_events has %s %s", e.ID, e.OrderID, e.Status, r.OrderID, r.Status)
		}
		if e.ID <= lastOfOrder[e.OrderID] {
			note("order %s: event %d after %d", e.OrderID, e.ID, lastOfOrder[e.OrderID])
		}
		lastOfOrder[e.OrderID] = e.ID
	}
	missing, repeated := 0, 0
	for _, r := range rows {
		switch n := seen[r.ID]; {
		case n == 0:
			missing++
			note("event %d (%s %s) missing", r.ID, r.OrderID, r.Status)
		case n > 1:
			repeated++
			note("event %d (%s %s) came %d times", r.ID, r.OrderID, r.Status, n)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d events missing, %d repeated: %s", missing, len(rows), repeated, strings.Join(problems, "; "))
	}
	return nil
}

// kitchen moves orders along their routes through the staff API, one step per order per round, the way a
// kitchen's tablet does; with a load it also accepts the load's new orders.
type kitchen struct {
	bearer string
	every  time.Duration
	load   *load
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	routes   map[string][]string // the statuses each order still goes through
	loadSeen int                 // the load's acknowledged orders already taken
	moves    int
	failures []string
}

// kitchenLoadTake is how many of the load's new orders the kitchen accepts per round.
const kitchenLoadTake = 5

func startKitchen(bearer string, every time.Duration, l *load) *kitchen {
	ctx, cancel := context.WithCancel(context.Background())
	k := &kitchen{bearer: bearer, every: every, load: l, cancel: cancel, routes: map[string][]string{}}
	k.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			k.round(ctx)
		}
	})
	return k
}

// add gives the kitchen an order to move through route (e.g. ACCEPTED … DELIVERED), after the steps it already
// has for that order.
func (k *kitchen) add(id string, route ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.routes[id] = append(k.routes[id], route...)
}

func (k *kitchen) round(ctx context.Context) {
	if k.load != nil {
		ids, n := k.load.ackedSince(k.loadSeen)
		k.mu.Lock()
		for _, id := range ids[:min(kitchenLoadTake, len(ids))] {
			k.routes[id] = []string{"ACCEPTED"}
		}
		k.loadSeen = n
		k.mu.Unlock()
	}
	k.mu.Lock()
	type move struct{ id, status string }
	var moves []move
	for id, route := range k.routes {
		if len(route) > 0 {
			moves = append(moves, move{id, route[0]})
		}
	}
	k.mu.Unlock()
	work := make(chan move)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for m := range work {
				err := k.move(ctx, m.id, m.status)
				k.mu.Lock()
				if err == nil {
					k.routes[m.id] = k.routes[m.id][1:]
					k.moves++
				} else if ctx.Err() == nil {
					k.failures = append(k.failures, fmt.Sprintf("%s %v", time.Now().Format("15:04:05.000"), err))
				}
				k.mu.Unlock()
			}
		})
	}
	for _, m := range moves {
		work <- m
	}
	close(work)
	wg.Wait()
}

func (k *kitchen) move(ctx context.Context, id, status string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", stack.GatewayURL+"/staff/api/orders/"+id+"/status",
		strings.NewReader(`{"status":"`+status+`"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+k.bearer)
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", id, status, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("move %s to %s: %d", id, status, resp.StatusCode)
	}
	return nil
}

// pending is how many moves are left.
func (k *kitchen) pending() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, r := range k.routes {
		n += len(r)
	}
	return n
}

func (k *kitchen) stop() (moves int, failures []string) {
	k.cancel()
	k.wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.moves, k.failures
}

// fullRoute is an order's way from CREATED to the customer's door.
var fullRoute = []string{"ACCEPTED", "BAKING", "OUT_FOR_DELIVERY", "DELIVERED"}

type trackedOrder struct{ id, token string }

// placeTrackedAs places an order under a test's customer name and returns it with its tracking token. Its key
// must not start with a load's prefix (checkStoredOnce counts every order under those).
func placeTrackedAs(t *testing.T, name, key string) (trackedOrder, error) {
	for attempt := 0; ; attempt++ {
		status, p, err := placeOrder(t, key, orderBody(name))
		if status == http.StatusCreated {
			return trackedOrder{p.ID, p.TrackingToken}, nil
		}
		if attempt == 5 {
			return trackedOrder{}, err
		}
		time.Sleep(loadPause)
	}
}

// streamSeen describes what one stream saw around a window (a NATS outage): its drops and refusals, when it
// was connected again, and the longest time without an event.
func streamSeen(s *eventsource.Source, from, to time.Time) string {
	var ended, refused int
	var firstDrop, lastRefusal time.Time
	for _, d := range s.Drops() {
		if d.At.Before(from.Add(-time.Second)) {
			continue
		}
		if firstDrop.IsZero() {
			firstDrop = d.At
		}
		if d.Status != 0 {
			refused++
			lastRefusal = d.At
		} else {
			ended++
		}
	}
	var back time.Time
	for _, c := range s.Connects() {
		if !firstDrop.IsZero() && c.After(firstDrop) {
			back = c
			break
		}
	}
	var quiet time.Duration
	var quietFrom time.Time
	frames := s.Frames()
	for i := 1; i < len(frames); i++ {
		if frames[i].At.After(from) && frames[i-1].At.Before(to.Add(30*time.Second)) {
			if g := frames[i].At.Sub(frames[i-1].At); g > quiet {
				quiet, quietFrom = g, frames[i-1].At
			}
		}
	}
	clock := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format("15:04:05.0")
	}
	return fmt.Sprintf("%d connections ended, %d opens refused (first drop %s, last refusal %s, connected again %s); no event for %s from %s; %d frames",
		ended, refused, clock(firstDrop), clock(lastRefusal), clock(back), quiet.Round(100*time.Millisecond), clock(quietFrom), len(frames))
}

// openFDs counts a process's open file descriptors.
func openFDs(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds), err
}

// fdReport reads the open file descriptors of the stack's event path: gateway, order replicas, every sidecar
// and NATS.
func fdReport(t *testing.T) string {
	t.Helper()
	children, _ := filepath.Glob(filepath.Join(stack.Dir, "pids", "*.child"))
	var parts []string
	for _, f := range children {
		name := strings.TrimSuffix(filepath.Base(f), ".child")
		if name != "gateway" && name != "nats" && name != "order" && !strings.HasPrefix(name, "order-") && !strings.HasPrefix(name, "sidecar-") {
			continue
		}
		pid, err := stack.Pid(name)
		if err != nil {
			continue
		}
		n, err := openFDs(pid)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s ?(%v)", name, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	if n, err := openFDs(os.Getpid()); err == nil {
		parts = append(parts, fmt.Sprintf("this test %d", n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// NATS stops for 20 s under load, with customers and staff following their streams: orders are still taken
// (their events wait in the outbox), and once NATS is back every stream resumes (those whose connection failed
// during the outage after their Last-Event-ID) and gets exactly the events order_events holds, none lost, none
// repeated.
//
// A relay that marked an event relayed after a failed publish loses it only when the publish is really lost:
// while order's NATS client reconnects it buffers publishes (nats.go's ReconnectBufSize, 8 MB) and sends them
// once connected, so the events whose publish timed out during the outage still reach the stream.
func TestNATSOutageLosesNoOrderAndNoEvent(t *testing.T) {
	const outage = 20 * time.Second
	prefix := fmt.Sprintf("natsout-%d", time.Now().UnixNano())
	tracked := "Tracked " + prefix
	bearer := staff(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	client := streamClient()

	staffStreams := []*eventsource.Source{followStaff(ctx, client, bearer), followStaff(ctx, client, bearer)}
	awaitConnected(t, 30*time.Second, staffStreams...)
	time.Sleep(2 * time.Second) // each board's consumer exists before the first order of the test

	l := startLoad(t, prefix, 4)
	k := startKitchen(bearer, 3*time.Second, l)
	customerCtx, stopCustomers := context.WithCancel(ctx)
	defer stopCustomers()
	var customers []*eventsource.Source
	var orders []trackedOrder
	follow := func(batch string, n int, route []string) {
		for i := range n {
			o, err := placeTrackedAs(t, tracked, fmt.Sprintf("track-%s-%s-%d", prefix, batch, i))
			if err != nil {
				t.Fatalf("place a tracked order: %v", err)
			}
			orders = append(orders, o)
			customers = append(customers, followCustomer(customerCtx, client, o.id, o.token))
			k.add(o.id, route...)
		}
	}
	// The orders followed before the outage are only accepted before it: the rest of their way is decided while
	// NATS is down, so their streams must carry events from the outbox after it, however slowly the test got
	// to the outage.
	follow("before", 6, fullRoute[:1])
	awaitConnected(t, 30*time.Second, customers...)
	time.Sleep(5 * time.Second)

	stopping := time.Now()
	if out, err := stack.Script(time.Minute, "stack.sh", "stop-process", "nats"); err != nil {
		t.Fatalf("stop NATS: %v\n%s", err, out)
	}
	stopped := time.Now()
	t.Logf("NATS stopped at %s (took %s)", stopped.Format("15:04:05.0"), stopped.Sub(stopping).Round(100*time.Millisecond))
	for _, o := range orders {
		k.add(o.id, fullRoute[1:]...)
	}
	time.Sleep(5 * time.Second)
	// Some connections fail while NATS is down, as a phone's does: they must resume after their Last-Event-ID.
	interrupted := []*eventsource.Source{customers[0], customers[1], customers[2], staffStreams[1]}
	for _, s := range interrupted {
		s.Interrupt()
	}
	follow("during", 6, fullRoute) // ordered, acknowledged and followed while NATS is down
	time.Sleep(time.Until(stopped.Add(outage)))

	starting := time.Now()
	if out, err := stack.Script(5*time.Minute, "stack.sh", "start-nats"); err != nil {
		t.Fatalf("stack.sh start-nats: %v\n%s", err, out)
	}
	back := time.Now()
	t.Logf("NATS down from %s to %s (%s; start-nats took %s)", stopped.Format("15:04:05.0"), back.Format("15:04:05.0"),
		back.Sub(stopped).Round(100*time.Millisecond), back.Sub(starting).Round(100*time.Millisecond))
	follow("after", 2, fullRoute)

	eventually(t, 3*time.Minute, func() error {
		if n := k.pending(); n > 0 {
			return fmt.Errorf("the kitchen has %d moves left", n)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	r := l.stop()
	moves, kitchenFailures := k.stop()
	for _, f := range kitchenFailures {
		t.Errorf("kitchen: %s", f)
	}
	stored := checkStoredOnce(t, r, prefix)

	failedInOutage, ackedInOutage := 0, 0
	for _, at := range r.FailedAt {
		if !at.Before(stopping) && !at.After(back) {
			failedInOutage++
		}
	}
	for _, at := range r.AckedAt {
		if at.After(stopped) && at.Before(starting) {
			ackedInOutage++
		}
	}
	t.Logf("load: %d sent, %d acknowledged (%d while NATS was down), %d failed attempts (%d during the outage), longest gap between acks %s; %d stored; kitchen: %d moves",
		r.Sent, r.Acked, ackedInOutage, r.Failures, failedInOutage, r.LongestGap.Round(time.Millisecond), stored, moves)
	if failedInOutage > 0 {
		t.Errorf("%d order attempts failed during the NATS outage (first: %v): the outbox must take orders while NATS is down", failedInOutage, r.FirstFailures)
	}
	if ackedInOutage == 0 {
		t.Error("no order acknowledged while NATS was down")
	}

	// Every customer stream ends at DELIVERED, having resumed after the outage.
	ending := time.After(2 * time.Minute)
wait:
	for i, s := range customers {
		select {
		case <-s.Done():
		case <-ending:
			t.Errorf("customer stream of %s (and maybe more) did not end within 2 minutes of the last delivery", orders[i].id)
			stopCustomers()
			break wait
		}
	}
	rows, byOrder := eventRows(t, "Load "+prefix, tracked)
	for i, s := range customers {
		if err := s.Wait(); err != nil {
			t.Errorf("customer stream %d: %v", i, err)
		}
		if !s.Finished() {
			t.Errorf("customer stream %d (order %s) never got its final status", i, orders[i].id)
		}
		if err := customerMismatch(orders[i].id, s.Frames(), byOrder[orders[i].id]); err != nil {
			t.Error(err)
		}
		// NATS serves before `stack.sh start-nats` returns (35 s under CI load once): on a loaded machine
		// the whole rest of a route can go by in between. No event reaches a stream between the stop and
		// the start, so the last frame after the start came through the restarted NATS.
		frames := s.Frames()
		if len(frames) == 0 || !frames[len(frames)-1].At.After(starting) {
			t.Errorf("customer stream of %s got nothing after NATS was started again", orders[i].id)
		}
		t.Logf("customer %d (%s): %s", i, orders[i].id, streamSeen(s, stopped, back))
	}

	// Each staff board holds exactly the test's events once the relays caught up.
	var lastErr error
	eventually(t, 2*time.Minute, func() error {
		rows, byOrder = eventRows(t, "Load "+prefix, tracked)
		for i, s := range staffStreams {
			if lastErr = staffMismatch(s.Frames(), rows, byOrder); lastErr != nil {
				return fmt.Errorf("staff stream %d: %w", i, lastErr)
			}
		}
		return nil
	})
	cancel()
	for i, s := range staffStreams {
		if err := s.Wait(); err != nil {
			t.Errorf("staff stream %d: %v", i, err)
		}
		frames := s.Frames()
		if len(frames) == 0 || !frames[len(frames)-1].At.After(back) {
			t.Errorf("staff stream %d got nothing after NATS was back", i)
		}
		t.Logf("staff %d: %s", i, streamSeen(s, stopped, back))
	}
	for i, s := range interrupted {
		if len(s.Reconnects()) == 0 {
			t.Errorf("stream %d, interrupted during the outage, never connected again", i)
		}
	}
	t.Logf("%d order_events rows for the test's %d orders, each on both staff streams once", len(rows), len(byOrder))
}

// A thousand customers follow their orders while four clients order as fast as they are answered and the
// kitchen moves the followed orders (a quarter of them to the door, so those streams end), with five staff
// boards open: every stream gets exactly its events, in order.
func TestThousandCustomerStreamsUnderLoad(t *testing.T) {
	const customers, boards = 1000, 5
	prefix := fmt.Sprintf("thousand-%d", time.Now().UnixNano())
	tracked := "Tracked " + prefix
	bearer := staff(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	client := streamClient()

	staffStreams := make([]*eventsource.Source, boards)
	for i := range staffStreams {
		staffStreams[i] = followStaff(ctx, client, bearer)
	}
	awaitConnected(t, 30*time.Second, staffStreams...)
	time.Sleep(2 * time.Second) // each board's consumer exists before the first order of the test

	l := startLoad(t, prefix, 4)
	orders := make([]trackedOrder, customers)
	var placing sync.WaitGroup
	var placeErrs sync.Map
	for w := range 8 {
		placing.Go(func() {
			for i := w; i < customers; i += 8 {
				o, err := placeTrackedAs(t, tracked, fmt.Sprintf("track-%s-%d", prefix, i))
				if err != nil {
					placeErrs.Store(i, err)
					continue
				}
				orders[i] = o
			}
		})
	}
	placing.Wait()
	placeErrs.Range(func(k, v any) bool { t.Errorf("tracked order %v: %v", k, v); return true })
	if t.Failed() {
		l.stop()
		t.FailNow()
	}

	// Customers come online in groups, a group once the one before is open (see TestThousandStreamsOnOneGateway:
	// opening all at once only queues TLS handshakes on two cores).
	opening := time.Now()
	sources := make([]*eventsource.Source, customers)
	for first := 0; first < customers; first += streamBatch {
		for i := first; i < min(first+streamBatch, customers); i++ {
			sources[i] = followCustomer(ctx, client, orders[i].id, orders[i].token)
		}
		awaitConnected(t, time.Minute, sources[first:min(first+streamBatch, customers)]...)
	}
	t.Logf("%d customer streams open in %s", customers, time.Since(opening).Round(100*time.Millisecond))
	time.Sleep(time.Second)
	t.Logf("open file descriptors at %d customer and %d staff streams: %s", customers, boards, fdReport(t))

	k := startKitchen(bearer, time.Second, l)
	for i, o := range orders {
		switch i % 4 {
		case 0:
			k.add(o.id, fullRoute...) // to the door: the stream ends
		case 1:
			k.add(o.id, fullRoute[:2]...)
		case 2:
			k.add(o.id, fullRoute[:1]...)
		}
	}
	eventually(t, 5*time.Minute, func() error {
		if n := k.pending(); n > 0 {
			return fmt.Errorf("the kitchen has %d moves left", n)
		}
		return nil
	})
	t.Logf("open file descriptors after the kitchen's rounds: %s", fdReport(t))
	r := l.stop()
	moves, kitchenFailures := k.stop()
	for _, f := range kitchenFailures[:min(10, len(kitchenFailures))] {
		t.Errorf("kitchen: %s", f)
	}
	stored := checkStoredOnce(t, r, prefix)
	t.Logf("load: %d sent, %d acknowledged, %d failed attempts; %d stored; kitchen: %d moves", r.Sent, r.Acked, r.Failures, stored, moves)

	// Every customer stream holds exactly its order's events; the delivered ones ended.
	_, byOrder := eventRows(t, tracked)
	var mismatches []string
	eventually(t, 2*time.Minute, func() error {
		mismatches = mismatches[:0]
		for i, s := range sources {
			if err := customerMismatch(orders[i].id, s.Frames(), byOrder[orders[i].id]); err != nil {
				mismatches = append(mismatches, err.Error())
			} else if i%4 == 0 && !s.Finished() {
				mismatches = append(mismatches, fmt.Sprintf("order %s delivered, its stream still open", orders[i].id))
			}
		}
		if len(mismatches) > 0 {
			return fmt.Errorf("%d of %d customer streams differ from order_events; first: %s", len(mismatches), customers, mismatches[0])
		}
		return nil
	})
	reconnects, refused := 0, 0
	for i, s := range sources {
		reconnects += len(s.Reconnects())
		for _, d := range s.Drops() {
			if d.Status != 0 {
				refused++
			}
		}
		if i%4 != 0 && s.Finished() {
			t.Errorf("the stream of %s ended, but its order is not delivered", orders[i].id)
		}
	}
	t.Logf("customer streams: %d reconnects, %d opens refused (503) in all", reconnects, refused)

	rows, byAll := eventRows(t, "Load "+prefix, tracked)
	eventually(t, 2*time.Minute, func() error {
		rows, byAll = eventRows(t, "Load "+prefix, tracked)
		for i, s := range staffStreams {
			if err := staffMismatch(s.Frames(), rows, byAll); err != nil {
				return fmt.Errorf("staff stream %d: %w", i, err)
			}
		}
		return nil
	})
	cancel()
	for i, s := range append(staffStreams, sources...) {
		if err := s.Wait(); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
	}
	t.Logf("%d order_events rows for the test's %d orders, each on all %d staff streams once", len(rows), len(byAll), boards)
}
