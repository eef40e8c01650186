package clientlimit

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable time for the limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newLimiter(perSecond float64, burst, maxClients int) (*RateLimiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewRateLimiter(perSecond, burst, maxClients)
	l.now = c.now
	return l, c
}

func TestRateLimiter_Allow(t *testing.T) {
	type step struct {
		after     time.Duration // clock moves this much first
		key       string
		allowed   bool
		wantRetry time.Duration // when refused
	}
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []step
	}{
		{"burst then refused until a token is back", 2, 3, []step{
			{0, "a", true, 0}, {0, "a", true, 0}, {0, "a", true, 0},
			{0, "a", false, 500 * time.Millisecond},
			{250 * time.Millisecond, "a", false, 250 * time.Millisecond},
			{250 * time.Millisecond, "a", true, 0},
			{0, "a", false, 500 * time.Millisecond},
		}},
		{"clients have their own buckets", 1, 1, []step{
			{0, "a", true, 0}, {0, "a", false, time.Second}, {0, "b", true, 0}, {0, "b", false, time.Second},
		}},
		{"refused requests cost nothing", 1, 1, []step{
			{0, "a", true, 0}, {0, "a", false, time.Second}, {0, "a", false, time.Second}, {0, "a", false, time.Second},
			{time.Second, "a", true, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clock := newLimiter(tt.rate, tt.burst, 100)
			for i, s := range tt.steps {
				clock.add(s.after)
				ok, retry := l.Allow(s.key)
				if ok != s.allowed || (!ok && retry != s.wantRetry) {
					t.Fatalf("step %d (%s): Allow = %v, retry %v; want %v, retry %v", i, s.key, ok, retry, s.allowed, s.wantRetry)
				}
			}
		})
	}
}

func TestRateLimiter_Peek(t *testing.T) {
	l, clock := newLimiter(0.5, 2, 10) // bursts of 2, one more every 2 s
	if ok, _ := l.Peek("a"); !ok {
		t.Fatal("Peek of an unknown client: refused; want allowed")
	}
	for i := range 5 {
		if ok, _ := l.Peek("a"); !ok {
			t.Fatalf("Peek %d before any request: refused; Peek must take nothing", i)
		}
	}
	l.Allow("a")
	l.Allow("a")
	ok, retry := l.Peek("a")
	if ok || retry != 2*time.Second {
		t.Fatalf("Peek after the burst = %v, %v; want refused, retry in 2s", ok, retry)
	}
	if ok, _ := l.Peek("b"); !ok {
		t.Fatal("another client: refused")
	}
	clock.add(2 * time.Second)
	if ok, _ := l.Peek("a"); !ok {
		t.Fatal("Peek after the refill: refused")
	}
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("Allow after Peek: refused; Peek must not have taken the refilled request")
	}
	if ok, _ := NewRateLimiter(0, 1, 1).Peek("a"); !ok {
		t.Fatal("no limit: refused")
	}
}

func TestRateLimiter_off(t *testing.T) {
	for _, perSecond := range []float64{0, -1} {
		l := NewRateLimiter(perSecond, 1, 1)
		for range 1000 {
			if ok, _ := l.Allow("a"); !ok {
				t.Fatalf("rate %v: refused; want no limit", perSecond)
			}
		}
	}
}

func TestRateLimiter_boundedTable(t *testing.T) {
	t.Run("idle clients are forgotten first", func(t *testing.T) {
		l, clock := newLimiter(1, 2, 3) // a bucket refills in 2 s
		l.Allow("busy")
		l.Allow("busy")
		clock.add(time.Second)
		l.Allow("idle-1")
		l.Allow("idle-2")
		clock.add(2500 * time.Millisecond) // idle-1 and idle-2 were seen 2.5 s ago, busy 3.5 s ago
		l.Allow("busy")                    // seen now; its bucket is still refilling
		l.Allow("new")
		if n := l.Len(); n != 2 {
			t.Fatalf("table holds %d clients, want 2 (busy, new)", n)
		}
		if _, ok := l.clients["busy"]; !ok {
			t.Fatalf("the active client was forgotten; table %v", l.clients)
		}
	})
	t.Run("never more than maxClients", func(t *testing.T) {
		l, _ := newLimiter(1, 1, 10)
		for i := range 1000 {
			l.Allow(fmt.Sprint("10.0.0.", i))
			if n := l.Len(); n > 10 {
				t.Fatalf("table holds %d clients, want at most 10", n)
			}
		}
	})
}

func TestStreamLimiter(t *testing.T) {
	type step struct {
		key     string
		release int // >0: release the stream opened at that step (1-based) instead of opening one
		want    error
	}
	tests := []struct {
		name             string
		perClient, total int
		steps            []step
	}{
		{"per client", 2, 10, []step{{"a", 0, nil}, {"a", 0, nil}, {"a", 0, ErrClientStreams}, {"b", 0, nil},
			{"", 1, nil}, {"a", 0, nil}, {"a", 0, ErrClientStreams}}},
		{"in total", 10, 2, []step{{"a", 0, nil}, {"b", 0, nil}, {"c", 0, ErrTotalStreams}, {"", 2, nil}, {"c", 0, nil}}},
		{"no caps", 0, 0, []step{{"a", 0, nil}, {"a", 0, nil}, {"a", 0, nil}}},
		{"release twice counts once", 1, 1, []step{{"a", 0, nil}, {"", 1, nil}, {"", 1, nil}, {"a", 0, nil}, {"b", 0, ErrTotalStreams}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewStreamLimiter(tt.perClient, tt.total)
			releases := map[int]func(){}
			for i, s := range tt.steps {
				if s.release > 0 {
					releases[s.release]()
					continue
				}
				release, err := l.Acquire(s.key)
				if !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
					t.Fatalf("step %d: Acquire(%s) = %v, want %v", i+1, s.key, err, s.want)
				}
				if err == nil {
					releases[i+1] = release
				}
			}
		})
	}
}

func TestStreamLimiter_concurrent(t *testing.T) {
	l := NewStreamLimiter(50, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if release, err := l.Acquire("a"); err == nil {
					release()
				}
			}
		})
	}
	wg.Wait()
	if total, a := l.Open("a"); total != 0 || a != 0 || len(l.open) != 0 {
		t.Fatalf("after every release: %d open, %d for a, table %v; want nothing", total, a, l.open)
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ remote, forwarded, want string }{
		{"203.0.113.7:51234", "", "203.0.113.7"},
		{"[2001:db8::1]:443", "", "2001:db8::/64"},
		{"[2001:db8::ffff:1:2:3]:443", "", "2001:db8::/64"}, // the same subscriber's other address
		{"[2001:db8:0:1::1]:443", "", "2001:db8:0:1::/64"},
		{"[::ffff:203.0.113.7]:443", "", "203.0.113.7"},
		{"[fe80::1%eth0]:443", "", "fe80::/64"},
		{"203.0.113.7:51234", "198.51.100.1", "203.0.113.7"}, // a header any client can write is ignored
		{"pipe", "", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.forwarded != "" {
				r.Header.Set("X-Forwarded-For", tt.forwarded)
			}
			if got := ClientKey(r); got != tt.want {
				t.Errorf("ClientKey = %q, want %q", got, tt.want)
			}
		})
	}
}
