package testkit

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually asks again.
const PollInterval = 100 * time.Millisecond

// Eventually calls ready until it returns nil, and fails the test with its last error once within has passed:
// for state that settles (a server starting, a health check turning green).
func Eventually(t testing.TB, within time.Duration, what string, ready func() error) {
	t.Helper()
	EventuallyEvery(t, within, PollInterval, what, ready)
}

// EventuallyEvery is Eventually asking every interval: more often for what settles in milliseconds (a
// goroutine subscribing, a log line), less often for calls that cost the system under test (an order placed).
func EventuallyEvery(t testing.TB, within, every time.Duration, what string, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(every)
	}
}
