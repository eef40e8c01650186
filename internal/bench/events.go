package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/internal/stacktest"
	"github.com/pizzajoint/mesh/order"
)

// EventOptions of an event-path run.
type EventOptions struct {
	// Levels are the numbers of open customer streams, one order each.
	Levels []int
	// StaffStreams are open on every cell, each getting every status change.
	StaffStreams int
	// Changes status changes are sent per cell at Rate per second, spread over the level's orders; each
	// order moves at most len(eventMoves) times, so Changes may not exceed that many per order.
	Changes int
	Rate    float64
	// StackEnv goes to the stack's services.
	StackEnv map[string]string
	Log      io.Writer
}

// eventMoves are the moves a status change makes, in order, each once per order. DELIVERED is left out: it
// ends the customer's stream, and the level is the number of streams kept open.
var eventMoves = []order.Status{order.StatusAccepted, order.StatusBaking, order.StatusOutForDelivery}

// Check reports options the run cannot honour.
func (o EventOptions) Check() error {
	if len(o.Levels) == 0 || o.Changes < 1 || o.Rate <= 0 || o.StaffStreams < 0 {
		return errors.New("events: want levels, changes ≥ 1, a rate above 0 and staff streams ≥ 0")
	}
	for _, n := range o.Levels {
		if n < 1 {
			return fmt.Errorf("events: level %d: want at least one customer stream", n)
		}
		if o.Changes > n*len(eventMoves) {
			return fmt.Errorf("events: %d changes over %d orders: at most %d each (%v); send fewer or open more streams",
				o.Changes, n, len(eventMoves), eventMoves)
		}
	}
	return nil
}

// RunEvents starts a mesh stack, measures every level on its event path (NATS JetStream) and returns the
// report. It stops the stack before returning.
func RunEvents(ctx context.Context, opts EventOptions) (rep EventReport, err error) {
	if err := opts.Check(); err != nil {
		return rep, err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(opts.Log, "bench events: "+format+"\n", a...) }
	rep = EventReport{Date: time.Now(), Machine: machine(), GoVersion: runtime.Version(), Commit: commit(), Rate: opts.Rate}

	most := 0
	for _, n := range opts.Levels {
		most = max(most, n)
	}
	logf("starting a mesh stack (events on NATS JetStream), about a minute")
	paths := []string{PathJetStream}
	stacks := make([]*stacktest.Stack, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i := range paths {
		env := stackEnv("on", nil, opts.StackEnv, nil)
		// Every stream of the bench comes from 127.0.0.1: room for a level's streams, and those of the last
		// level the gateway may still be closing.
		env["GATEWAY_LIMITS_STREAMS_PER_CLIENT"] = strconv.Itoa(2 * (most + opts.StaffStreams))
		env["GATEWAY_LIMITS_STREAMS"] = strconv.Itoa(4 * (most + opts.StaffStreams))
		wg.Go(func() { stacks[i], errs[i] = stacktest.Start(stacktest.Options{Env: env}) })
	}
	wg.Wait()
	defer func() {
		for _, s := range stacks {
			if s == nil {
				continue
			}
			if serr := s.Stop(); serr != nil {
				err = errors.Join(err, serr)
			} else if err == nil {
				_ = os.RemoveAll(s.Dir)
			}
		}
	}()
	for i, e := range errs {
		if e != nil {
			if stacks[i] != nil {
				stacks[i].DumpLogs(os.Stderr)
			}
			return rep, fmt.Errorf("%s stack: %w", paths[i], e)
		}
	}
	targets := make([]*eventTarget, len(paths))
	for i, s := range stacks {
		if targets[i], err = newEventTarget(paths[i], s); err != nil {
			return rep, err
		}
	}
	defer func() {
		for _, t := range targets {
			t.client.CloseIdleConnections()
		}
	}()

	runID := strconv.FormatInt(time.Now().Unix(), 36)
	for _, level := range opts.Levels {
		for _, t := range targets {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			cell, err := t.measure(ctx, level, opts, runID, logf)
			if err != nil {
				return rep, fmt.Errorf("%s with %d customer streams: %w", t.path, level, err)
			}
			rep.Cells = append(rep.Cells, cell)
			lat := sorted(cell.Latencies)
			logf("%4d streams  %-9s  p50 %s  p99 %s  max %s  missing %d  repeated %d  unexpected %d  refused %d  load %.2f",
				level, t.path, ms(Percentile(lat, 0.5)), ms(Percentile(lat, 0.99)), ms(Percentile(lat, 1)),
				cell.Missing, cell.Repeated, cell.Unexpected, cell.refused(), cell.Load1)
		}
	}
	return rep, nil
}

// eventTarget is one stack under test: its gateway, a client for it and a staff token.
type eventTarget struct {
	path   string
	url    string
	client *http.Client
	staff  string
}

func newEventTarget(path string, s *stacktest.Stack) (*eventTarget, error) {
	ca, err := os.ReadFile(s.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no certificate", s.CACert)
	}
	token, err := s.Meshctl("token", "staff", "bench-events")
	if err != nil {
		return nil, err
	}
	// HTTP/1.1, one connection per stream, as that many customers' browsers would hold; no cap on them.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
	}}
	return &eventTarget{path: path, url: s.GatewayURL, client: client, staff: token}, nil
}

// placed is an order with its customer stream.
type placed struct {
	id, token string
	stream    *sseStream
}

// change is one status change sent: when it was sent, and whether the service took it.
type change struct {
	order  int
	status order.Status
	sent   time.Time
	ok     bool
}

func (t *eventTarget) measure(ctx context.Context, level int, opts EventOptions, runID string,
	logf func(string, ...any)) (EventCell, error) {
	cell := EventCell{Path: t.path, CustomerStreams: level, StaffStreams: opts.StaffStreams, Changes: opts.Changes,
		Refused: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // closes every stream of the cell
	defer t.client.CloseIdleConnections()

	orders, err := t.place(ctx, level, NewOrders(t.url+"/pizza", fmt.Sprintf("bench-events-%s-%s-%d", runID, t.path, level), uint64(level)))
	if err != nil {
		return cell, err
	}
	// Every order's stream, and its history (CREATED) on it, before anything moves.
	if err := parallel(ctx, level, 32, func(i int) error {
		s, err := t.open(ctx, "/pizza/"+orders[i].id+"/events", gateway.TrackingTokenHeader, orders[i].token)
		orders[i].stream = s
		return err
	}); err != nil {
		return cell, fmt.Errorf("open the customer streams: %w", err)
	}
	if err := waitFor(ctx, 60*time.Second, func() bool {
		for _, o := range orders {
			if o.stream.count() == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return cell, fmt.Errorf("the customer streams' history (CREATED): %w", err)
	}
	staff := make([]*sseStream, opts.StaffStreams)
	for i := range staff {
		if staff[i], err = t.open(ctx, "/staff/api/events", "Authorization", "Bearer "+t.staff); err != nil {
			return cell, fmt.Errorf("open a staff stream: %w", err)
		}
	}
	// A staff stream starts from now once order has subscribed it, which may be just after its answer's
	// headers: give that a moment, so the first changes are not sent before it.
	time.Sleep(500 * time.Millisecond)
	logf("%4d streams  %-9s  %d orders placed, their streams and %d staff streams open; sending %d changes at %.0f/s",
		level, t.path, level, len(staff), opts.Changes, opts.Rate)

	changes := make([]change, opts.Changes)
	var (
		mu   sync.Mutex // guards cell.Refused and cell.RequestLatencies
		sent sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / opts.Rate)
	start := time.Now()
	for i := range changes {
		// Open loop: each change leaves at its time, whether or not the ones before it were answered. Its
		// time is random within its slot of 1/rate: a strict grid would meet any periodic work in the path
		// (a poller's 200 ms cycle did) at the same few phases and measure only those.
		at := time.Duration(i)*interval + rand.N(interval)
		if d := time.Until(start.Add(at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return cell, ctx.Err()
			}
		}
		changes[i] = change{order: i % level, status: eventMoves[i/level]}
		sent.Go(func() {
			c := &changes[i]
			c.sent = time.Now()
			err := t.move(ctx, orders[c.order].id, c.status)
			took := time.Since(c.sent)
			mu.Lock()
			defer mu.Unlock()
			cell.RequestLatencies = append(cell.RequestLatencies, took)
			if err != nil {
				cell.Refused[err.Error()]++
				return
			}
			c.ok = true
		})
	}
	sent.Wait()

	// Every frame should come; then a moment more, so a repeat has the time to show.
	perOrder := make([]int, level)
	for _, c := range changes {
		if c.ok {
			perOrder[c.order]++
		}
	}
	taken := 0
	for _, n := range perOrder {
		taken += n
	}
	_ = waitFor(ctx, 30*time.Second, func() bool {
		for i, o := range orders {
			if o.stream.count() < 1+perOrder[i] {
				return false
			}
		}
		for _, s := range staff {
			if s.count() < taken {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	cell.Load1 = loadAverage()
	cancel()

	checkStreams(&cell, orders, staff, changes)
	return cell, nil
}

// checkStreams compares what every stream got with what it should have: on an order's stream its CREATED and each
// change the service took, once each; on a staff stream every change taken, once each. It records the
// customer streams' latencies.
func checkStreams(cell *EventCell, orders []placed, staff []*sseStream, changes []change) {
	type key struct {
		order  string
		status order.Status
	}
	sentAt := map[key]time.Time{}
	byOrder := map[string]bool{}
	for _, o := range orders {
		byOrder[o.id] = true
	}
	for _, c := range changes {
		if c.ok {
			sentAt[key{orders[c.order].id, c.status}] = c.sent
		}
	}
	for _, o := range orders {
		seen := map[order.Status]int{}
		for _, f := range o.stream.frames() {
			if f.OrderID != o.id {
				cell.Unexpected++
				continue
			}
			seen[f.Status]++
			if seen[f.Status] > 1 {
				cell.Repeated++
				continue
			}
			if f.Status == order.StatusCreated {
				continue
			}
			at, ok := sentAt[key{o.id, f.Status}]
			if !ok {
				cell.Unexpected++
				continue
			}
			cell.Latencies = append(cell.Latencies, f.at.Sub(at))
		}
		if seen[order.StatusCreated] == 0 {
			cell.Missing++
		}
		for k := range sentAt {
			if k.order == o.id && seen[k.status] == 0 {
				cell.Missing++
			}
		}
	}
	for _, s := range staff {
		seen := map[key]int{}
		for _, f := range s.frames() {
			// An order created just before the stream opened may show up: a staff stream starts "from now",
			// and now is as of the path's last event.
			if f.Status == order.StatusCreated && byOrder[f.OrderID] {
				continue
			}
			k := key{f.OrderID, f.Status}
			if _, ok := sentAt[k]; !ok {
				cell.Unexpected++
				continue
			}
			if seen[k]++; seen[k] > 1 {
				cell.Repeated++
			}
		}
		for k := range sentAt {
			if seen[k] == 0 {
				cell.Missing++
			}
		}
	}
	for _, s := range append(staff, streamsOf(orders)...) {
		if err := s.failure(); err != nil {
			cell.Refused["stream: "+err.Error()]++
		}
	}
}

func streamsOf(orders []placed) []*sseStream {
	out := make([]*sseStream, len(orders))
	for i, o := range orders {
		out[i] = o.stream
	}
	return out
}

// place orders n pizzas, 16 at a time, and returns their IDs and tracking tokens.
func (t *eventTarget) place(ctx context.Context, n int, gen *Orders) ([]placed, error) {
	out := make([]placed, n)
	err := parallel(ctx, n, 16, func(i int) error {
		body, err := json.Marshal(gen.NewOrder())
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/pizza", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(gateway.IdempotencyKeyHeader, gen.Key())
		resp, err := t.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var o struct {
			ID            string `json:"id"`
			TrackingToken string `json:"tracking_token"`
		}
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST /pizza: %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || o.ID == "" || o.TrackingToken == "" {
			return fmt.Errorf("POST /pizza: no order in the answer (%v)", err)
		}
		out[i] = placed{id: o.ID, token: o.TrackingToken}
		return nil
	})
	return out, err
}

// move sends one status change as staff do; an error is the answer's status line, or the transport's error.
func (t *eventTarget) move(ctx context.Context, id string, to order.Status) error {
	body, _ := json.Marshal(map[string]order.Status{"status": to})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/staff/api/orders/"+id+"/status", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+t.staff)
	resp, err := t.client.Do(req)
	if err != nil {
		return errors.New("transport error") // the message would name the order
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// open GETs an event stream with one credential header and reads it until ctx ends.
func (t *eventTarget) open(ctx context.Context, path, header, credential string) (*sseStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(header, credential)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, errors.New("transport error")
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, errors.New(resp.Status)
	}
	s := &sseStream{}
	go s.read(ctx, resp.Body)
	return s, nil
}

// frame is one event a stream delivered, with when it arrived.
type frame struct {
	at      time.Time
	OrderID string       `json:"order_id"`
	Status  order.Status `json:"status"`
}

// sseStream collects a stream's frames as they arrive.
type sseStream struct {
	mu  sync.Mutex
	got []frame
	err error // why the stream ended before its reader was told to stop
}

func (s *sseStream) read(ctx context.Context, body io.ReadCloser) {
	defer body.Close()
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue // id, event, keep-alive comments, blank lines
		}
		f := frame{at: time.Now()}
		err := json.Unmarshal([]byte(data), &f)
		s.mu.Lock()
		if err != nil {
			s.err = errors.New("a frame that is no event")
		} else {
			s.got = append(s.got, f)
		}
		s.mu.Unlock()
	}
	if ctx.Err() != nil {
		return // the bench closed it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = errors.New("ended early")
		if err := sc.Err(); err != nil {
			s.err = errors.New("broken")
		}
	}
}

func (s *sseStream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *sseStream) frames() []frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]frame(nil), s.got...)
}

func (s *sseStream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// parallel runs fn(0) … fn(n-1), at most width at once, and returns the first error.
func parallel(ctx context.Context, n, width int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		slots = make(chan struct{}, width)
	)
	for i := range n {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := fn(i); err != nil {
				once.Do(func() { first = err })
			}
		})
	}
	wg.Wait()
	return first
}

// waitFor polls done until it holds, ctx ends or within has passed.
func waitFor(ctx context.Context, within time.Duration, done func() bool) error {
	deadline := time.Now().Add(within)
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", within)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// loadAverage is the machine's one-minute load average, or 0 when it cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := ParseLoadAverage(b)
	return v
}
