// Package e2e tests the whole stack as operators run it: HTTPS to the gateway, the gateway's sidecar, mTLS to
// order's sidecar, order, MariaDB with credentials from Vault. Everything is real and started by
// internal/stacktest on private ports.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/internal/stacktest"
)

var stack *stacktest.Stack

// Short database leases, so the tests see several renewals, the max TTL and new MySQL users in minutes.
// PII data keys live 3 s, so a transit key rotation reaches new orders within the tests. Two order replicas, as
// in production: every test runs against a scaled-out order service.
var stackOptions = stacktest.Options{Env: map[string]string{
	"ORDER_REPLICAS":         "2",
	"DB_CREDS_TTL":           "6s",
	"DB_CREDS_MAX_TTL":       "18s",
	"ORDER_PII_KEY_LIFETIME": "3s",
	// The load tests place thousands of orders a second from one address, far past a customer's rate limit.
	"GATEWAY_LIMITS_ORDER_RATE": "0",
}}

// Customer data the tests send; it must never show up in a log or on a command line.
const (
	testPhone   = "+1 555 0142 77"
	testAddress = "221B Secretive Street"
)

func TestMain(m *testing.M) {
	// Every service of the test stack is built with the race detector: a race anywhere under the tests'
	// traffic and faults is a failure (checkNoDataRace), not a log line nobody reads.
	stackOptions.GoFlags = "-race"
	// A child process of TestPrimaryLostReplicaPromoted: its stack is that test's own, in the mode it names.
	if mode := os.Getenv(promotionModeEnv); mode != "" {
		env, err := promotionStackEnv(mode)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		maps.Copy(stackOptions.Env, env)
	}
	stackOptions.AfterTests = func(s *stacktest.Stack) error {
		return errors.Join(scanForSecrets(s), checkNoDataRace(s), checkProductionWritePath(s))
	}
	os.Exit(stacktest.Main(m, stackOptions, &stack))
}

type placed struct {
	ID            string `json:"id"`
	TrackingToken string `json:"tracking_token"`
	Status        string `json:"status"`
	TotalCents    int64  `json:"total_cents"`
	RequestID     string `json:"-"` // the X-Request-ID the gateway answered with, as every service logs it
}

func orderBody(name string) []byte {
	return fmt.Appendf(nil, `{"customer":{"name":%q,"phone":%q,"address":%q},`+
		`"items":[{"pizza":"margherita","size":"M","quantity":1}]}`, name, testPhone, testAddress)
}

// placeOrder POSTs an order and returns the status and the decoded body.
func placeOrder(t testing.TB, key string, body []byte) (int, placed, error) {
	req, err := http.NewRequest("POST", stack.GatewayURL+"/pizza", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := stack.HTTP.Do(req)
	if err != nil {
		return 0, placed{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := placed{RequestID: resp.Header.Get("X-Request-ID")}
	if resp.StatusCode == http.StatusCreated {
		if err := json.Unmarshal(b, &p); err != nil {
			return resp.StatusCode, p, fmt.Errorf("decode %q: %w", b, err)
		}
	} else {
		err = fmt.Errorf("POST /pizza: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, p, err
}

// Only the fault test's own hold instance ever has order's test-only hold hook: every other order instance
// runs production's write path (checked again after the last test, over every restart the tests caused).
func TestEveryOrderInstanceRunsTheProductionWritePath(t *testing.T) {
	if err := checkProductionWritePath(stack); err != nil {
		t.Error(err)
	}
}

// checkProductionWritePath: no order instance of the stack but the fault test's own hold instance
// (faults_test.go, holdReplica) ran with a test-only hook; each logs it at start when it does.
func checkProductionWritePath(s *stacktest.Stack) error {
	var errs []error
	scanned := 0
	for _, f := range s.Logs() {
		name := strings.TrimSuffix(filepath.Base(f), ".log")
		if name != "order" && !regexp.MustCompile(`^order-[0-9]+$`).MatchString(name) || name == fmt.Sprintf("order-%d", holdReplica) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		scanned++
		if bytes.Contains(b, []byte("TEST ONLY")) {
			errs = append(errs, fmt.Errorf("%s ran with a test-only hook: the e2e stack must run production's write path", name))
		}
	}
	if scanned == 0 {
		errs = append(errs, fmt.Errorf("no order instance's log in %s: nothing checked", s.Dir))
	}
	return errors.Join(errs...)
}
