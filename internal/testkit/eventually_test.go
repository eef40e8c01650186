package testkit

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the calling goroutine, as t.Fatalf does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// eventually runs EventuallyEvery on a recorder and returns what it failed with ("" when it returned).
func eventually(within, every time.Duration, ready func() error) string {
	f := &fatalRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		EventuallyEvery(f, within, every, "the thing", ready)
	}()
	<-done
	return f.msg
}

func TestEventuallyEvery(t *testing.T) {
	t.Run("returns once ready", func(t *testing.T) {
		calls := 0
		msg := eventually(time.Second, time.Millisecond, func() error {
			if calls++; calls < 5 {
				return errors.New("not yet")
			}
			return nil
		})
		if msg != "" || calls != 5 {
			t.Errorf("failed with %q after %d calls; want a return after 5", msg, calls)
		}
	})
	t.Run("fails with the last error when time is up", func(t *testing.T) {
		calls := 0
		start := time.Now()
		msg := eventually(100*time.Millisecond, 10*time.Millisecond, func() error { calls++; return fmt.Errorf("try %d", calls) })
		if want := fmt.Sprintf("the thing: not within 100ms: try %d", calls); msg != want {
			t.Errorf("failed with %q; want %q", msg, want)
		}
		// At most one call per interval, and more than one in the time given.
		if took := time.Since(start); took < 100*time.Millisecond || calls > 11 || calls < 2 {
			t.Errorf("%d calls in %s; want one every 10ms for 100ms", calls, took)
		}
	})
}
