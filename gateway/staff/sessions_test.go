package staff

import (
	"fmt"
	"testing"
	"time"
)

func TestSessionStore(t *testing.T) {
	policy := SessionPolicy{Idle: 10 * time.Minute, Absolute: time.Hour, Max: 3}
	tests := []struct {
		name  string
		steps []time.Duration // the session is used after each of these waits
		alive []bool
	}{
		{"used often enough", []time.Duration{9 * time.Minute, 9 * time.Minute, 9 * time.Minute}, []bool{true, true, true}},
		{"idle too long", []time.Duration{9 * time.Minute, 10 * time.Minute, 0}, []bool{true, false, false}},
		{"absolute expiry however busy", []time.Duration{9 * time.Minute, 9 * time.Minute, 9 * time.Minute,
			9 * time.Minute, 9 * time.Minute, 9 * time.Minute, 9 * time.Minute}, []bool{true, true, true, true, true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSessionStore(policy)
			now := time.Unix(1_700_000_000, 0)
			s.now = func() time.Time { return now }
			id := s.create("tok")
			for i, wait := range tt.steps {
				now = now.Add(wait)
				token, ok := s.lookup(id)
				if ok != tt.alive[i] || (ok && token != "tok") {
					t.Fatalf("after step %d (%v): lookup = %q, %v; want alive %v", i, wait, token, ok, tt.alive[i])
				}
			}
		})
	}
}

func TestSessionStore_revokeAndUnknown(t *testing.T) {
	s := newSessionStore(SessionPolicy{})
	a, b := s.create("tok-a"), s.create("tok-a")
	if a == b || len(a) < 40 {
		t.Fatalf("session IDs %q and %q: want distinct, long random IDs", a, b)
	}
	s.revoke(a)
	for _, tt := range []struct {
		id    string
		alive bool
	}{{a, false}, {b, true}, {"", false}, {"tok-a", false}, {b + "x", false}} {
		if _, ok := s.lookup(tt.id); ok != tt.alive {
			t.Errorf("lookup(%q) alive = %v, want %v", tt.id, ok, tt.alive)
		}
	}
}

func TestSessionStore_bounded(t *testing.T) {
	s := newSessionStore(SessionPolicy{Idle: time.Minute, Absolute: time.Hour, Max: 3})
	now := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return now }
	first := s.create("t0")
	var ids []string
	for i := range 3 {
		now = now.Add(time.Second)
		ids = append(ids, s.create(fmt.Sprint("t", i+1)))
		_, _ = s.lookup(first) // the first stays in use
	}
	if n := s.len(); n != 3 {
		t.Fatalf("%d sessions held, want at most 3", n)
	}
	if _, ok := s.lookup(first); !ok {
		t.Errorf("the session in use was dropped; the least recently used should go first")
	}
	if _, ok := s.lookup(ids[0]); ok {
		t.Errorf("the least recently used session was kept")
	}
	now = now.Add(2 * time.Minute) // every session idle: all go when room is needed
	s.create("t9")
	if n := s.len(); n != 1 {
		t.Errorf("%d sessions held after all others expired, want 1", n)
	}
}
