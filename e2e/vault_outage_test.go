package e2e

import (
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"
)

func orderReady() (bool, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health/readyz", stack.Ports.Order))
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// With Vault stopped, orders go on with the credentials at hand until they expire; then readiness says so
// (and Consul stops routing); when Vault is back the service recovers by itself.
func TestVaultOutage(t *testing.T) {
	pid, err := stack.SupervisorPid("vault")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	restarted := false
	restart := func() {
		if !restarted {
			restarted = true
			if out, err := stack.Script(5*time.Minute, "stack.sh", "start"); err != nil {
				t.Fatalf("restart vault (stack.sh start): %v\n%s", err, out)
			}
		}
	}
	defer restart()

	// Orders right after the stop still succeed: nothing on the hot path needs Vault.
	for i := range 5 {
		if status, _, err := placeOrder(t, "", orderBody("During outage")); status != http.StatusCreated {
			t.Fatalf("order %d, %s after Vault stopped: %d %v", i, time.Since(stopped).Round(time.Millisecond), status, err)
		}
	}
	// The lease (6 s) cannot be renewed: once it is over, order says it is not ready.
	eventually(t, 30*time.Second, func() error {
		if ready, err := orderReady(); ready || err != nil {
			return fmt.Errorf("order still ready (%v) %s after Vault stopped", err, time.Since(stopped).Round(time.Second))
		}
		return nil
	})
	t.Logf("order turned unready %s after Vault stopped", time.Since(stopped).Round(100*time.Millisecond))

	restart()
	back := time.Now()
	eventually(t, 60*time.Second, func() error {
		status, _, err := placeOrder(t, "", orderBody("After outage"))
		if status != http.StatusCreated {
			return fmt.Errorf("POST /pizza after Vault came back: %d %v", status, err)
		}
		return nil
	})
	t.Logf("orders succeed again %s after Vault came back", time.Since(back).Round(100*time.Millisecond))
	if ready, err := orderReady(); !ready {
		t.Errorf("order not ready after recovering: %v", err)
	}
}
