package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// orderUsers lists the MySQL users the order service is connected as right now.
func orderUsers(t *testing.T) []string {
	t.Helper()
	rows, err := stack.Observer.Query(`SELECT DISTINCT USER FROM information_schema.PROCESSLIST WHERE DB = 'pizza' AND USER <> 'observer'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	return users
}

func userExists(t *testing.T, user string) bool {
	t.Helper()
	var n int
	if err := stack.Observer.QueryRow(`SELECT COUNT(*) FROM mysql.user WHERE User = ?`, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// With 6 s leases and an 18 s max TTL, orders flow for 45 s: across many renewals and at least two max TTLs.
// No order may fail, the MySQL user in use must change, and expired users must be dropped.
func TestCredentialsRotateWhileOrdersFlow(t *testing.T) {
	const (
		clients  = 4
		duration = 45 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	var (
		mu       sync.Mutex
		ids      []string
		failures []string
		wg       sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil && n < 10000; n++ {
				status, p, err := placeOrder(t, fmt.Sprintf("cred-%d-%d", c, n), orderBody("Rotation"))
				mu.Lock()
				if status == http.StatusCreated {
					ids = append(ids, p.ID)
				} else {
					failures = append(failures, fmt.Sprintf("%s: %d %v", time.Now().Format(time.TimeOnly), status, err))
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		})
	}

	seen := map[string]time.Time{}
	var first string
	for ctx.Err() == nil {
		for _, u := range orderUsers(t) {
			if _, ok := seen[u]; !ok {
				seen[u] = time.Now()
				if first == "" {
					first = u
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()

	t.Logf("orders acknowledged: %d, failed: %d, MySQL users seen: %d", len(ids), len(failures), len(seen))
	if len(failures) > 0 {
		t.Errorf("%d orders failed while credentials rotated; first: %v", len(failures), failures[:min(5, len(failures))])
	}
	if len(ids) == 0 {
		t.Fatal("no order succeeded")
	}
	if len(seen) < 2 {
		t.Errorf("MySQL users seen in the process list: %v; want the user to change past the max TTL", seen)
	}
	var stored int
	if err := stack.Observer.QueryRow(`SELECT COUNT(*) FROM orders WHERE customer_name = 'Rotation'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(ids) {
		t.Errorf("orders in MySQL = %d, acknowledged = %d", stored, len(ids))
	}
	// The first user's lease passed its max TTL long ago: Vault revoked it and dropped the user.
	eventually(t, 30*time.Second, func() error {
		if userExists(t, first) {
			return fmt.Errorf("expired MySQL user %s still exists", first)
		}
		return nil
	})
}
