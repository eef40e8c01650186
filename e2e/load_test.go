package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// load is a few clients placing orders as fast as they are answered. Each order has its own Idempotency-Key
// and a failed request is retried with the same key, so retries can never create a second order.
type load struct {
	prefix string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sent     int      // requests sent, retries included
	acked    []string // order IDs answered 201, one per key
	ackedAt  []time.Time
	keys     []string // the keys of acked orders
	reqIDs   []string // the request IDs of the acknowledging answers
	failures []string // every non-201 answer or transport error, with its time
	failedAt []time.Time
	// abandoned are keys whose client gave up without an answer (maxAttemptsPerOrder failed attempts, or the
	// load stopped between tries): their order may or may not have been stored, but at most once.
	abandoned []string
}

// loadReport is what a load saw.
type loadReport struct {
	Sent, Acked, Failures int
	IDs, Keys, RequestIDs []string
	FirstFailures         []string
	FailedAt              []time.Time // when each failed attempt was answered
	AckedAt               []time.Time // when each acknowledgement came, in order
	Abandoned             []string
	// LongestGap is the longest time between two acknowledgements (or from the start to the first): how long
	// no customer could get an order through.
	LongestGap time.Duration
}

const maxAttemptsPerOrder = 20

// loadPause is how long a client waits after a failed attempt before it sends the order again.
const loadPause = 200 * time.Millisecond

// gatewayRetryPauses is how long the gateway pauses between its six tries of a call whose connection failed
// before any answer (50 ms doubling: cmd/gateway): a call that fails that way is answered no sooner.
const gatewayRetryPauses = (50 + 100 + 200 + 400 + 800) * time.Millisecond

func startLoad(t *testing.T, prefix string, clients int) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a backstop; stop ends it
	l := &load{prefix: prefix, cancel: cancel, ackedAt: []time.Time{time.Now()}}
	for c := range clients {
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil && n < 100000; n++ {
				l.placeWithRetries(t, ctx, fmt.Sprintf("%s-%d-%d", prefix, c, n))
			}
		})
	}
	return l
}

func (l *load) placeWithRetries(t *testing.T, ctx context.Context, key string) {
	for attempt := range maxAttemptsPerOrder {
		if attempt > 0 && ctx.Err() != nil {
			// Stopping: an unanswered order is the client's to retry later, not a lost one.
			l.mu.Lock()
			l.abandoned = append(l.abandoned, key)
			l.mu.Unlock()
			return
		}
		status, p, err := placeOrder(t, key, orderBody("Load "+l.prefix))
		l.mu.Lock()
		l.sent++
		if status == http.StatusCreated {
			l.acked = append(l.acked, p.ID)
			l.ackedAt = append(l.ackedAt, time.Now())
			l.keys = append(l.keys, key)
			l.reqIDs = append(l.reqIDs, p.RequestID)
			l.mu.Unlock()
			return
		}
		l.failures = append(l.failures, fmt.Sprintf("%s %s: %d %v", time.Now().Format("15:04:05.000"), key, status, err))
		l.failedAt = append(l.failedAt, time.Now())
		if attempt == maxAttemptsPerOrder-1 {
			l.abandoned = append(l.abandoned, key)
		}
		l.mu.Unlock()
		time.Sleep(loadPause)
	}
}

func (l *load) stop() loadReport {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(l.ackedAt); i++ {
		gap = max(gap, l.ackedAt[i].Sub(l.ackedAt[i-1]))
	}
	return loadReport{Sent: l.sent, Acked: len(l.acked), Failures: len(l.failures), IDs: l.acked, Keys: l.keys, RequestIDs: l.reqIDs,
		FirstFailures: l.failures[:min(5, len(l.failures))], FailedAt: l.failedAt, AckedAt: l.ackedAt[1:], Abandoned: l.abandoned, LongestGap: gap}
}

// ackedSince returns the IDs of the orders acknowledged after the first n, and how many there are in all.
func (l *load) ackedSince(n int) ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked[min(n, len(l.acked)):]...), len(l.acked)
}

// checkStoredOnce asserts every acknowledged order is in MySQL exactly once, each stored order under its own
// key, and nothing else under the keys but, at most once each, orders whose client gave up without an answer
// (their server may have stored them before the failure reached the client).
func checkStoredOnce(t *testing.T, r loadReport, prefix string) int {
	t.Helper()
	var stored, distinct int
	// Every order of this load carries its customer name; the keys live in their own table.
	if err := stack.Observer.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT k.idempotency_key) FROM orders o
		LEFT JOIN idempotency_keys k ON k.order_id = o.id AND k.idempotency_key LIKE ? WHERE o.customer_name = ?`,
		prefix+"-%", "Load "+prefix).Scan(&stored, &distinct); err != nil {
		t.Fatal(err)
	}
	found := 0
	for start := 0; start < len(r.IDs); start += 500 {
		batch := r.IDs[start:min(start+500, len(r.IDs))]
		q, args := `SELECT COUNT(*) FROM orders WHERE id IN (?`, []any{batch[0]}
		for _, id := range batch[1:] {
			q += ", ?"
			args = append(args, id)
		}
		var n int
		if err := stack.Observer.QueryRow(q+")", args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		found += n
	}
	rows, err := stack.Observer.Query(`SELECT idempotency_key FROM idempotency_keys WHERE idempotency_key LIKE ?`, prefix+"-%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	answered := map[string]bool{}
	for _, k := range r.Keys {
		answered[k] = true
	}
	gaveUp := map[string]bool{}
	for _, k := range r.Abandoned {
		gaveUp[k] = true
	}
	unanswered := 0
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		if !answered[k] {
			unanswered++
			if !gaveUp[k] {
				t.Errorf("an order is stored under key %s, which was neither acknowledged nor given up", k)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if found != r.Acked || stored != distinct || stored != r.Acked+unanswered {
		t.Errorf("acknowledged %d orders; found by id %d, rows under the keys %d (%d distinct keys, %d of them given up unanswered); want every acknowledged one once and each key once",
			r.Acked, found, stored, distinct, unanswered)
	}
	if unanswered > 0 {
		t.Logf("%d orders whose client gave up without an answer are stored, once each", unanswered)
	}
	return stored
}
