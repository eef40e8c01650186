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
}

// loadReport is what a load saw.
type loadReport struct {
	Sent, Acked, Failures int
	IDs, Keys, RequestIDs []string
	FirstFailures         []string
	// LongestGap is the longest time between two acknowledgements (or from the start to the first): how long
	// no customer could get an order through.
	LongestGap time.Duration
}

const maxAttemptsPerOrder = 20

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
			return // stopping: an unanswered order is the client's to retry later, not a lost one
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
		l.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
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
		FirstFailures: l.failures[:min(5, len(l.failures))], LongestGap: gap}
}

// checkStoredOnce asserts every acknowledged order is in MySQL exactly once, and nothing else under the keys.
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
	if found != r.Acked || stored != r.Acked || distinct != r.Acked {
		t.Errorf("acknowledged %d orders; found by id %d, rows under the keys %d (%d distinct keys); want all equal",
			r.Acked, found, stored, distinct)
	}
	return stored
}
