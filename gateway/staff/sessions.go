package staff

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"sync"
	"time"
)

// SessionPolicy bounds staff sessions. Zero fields take the defaults.
type SessionPolicy struct {
	// Idle ends a session nobody has used for this long (default 1h; an open board refreshes it each time
	// its event stream reconnects).
	Idle time.Duration
	// Absolute ends a session this long after sign-in, however busy (default 12h, a shift).
	Absolute time.Duration
	// Max bounds the sessions held; past it the least recently used one is dropped (default 10,000).
	Max int
}

func (p SessionPolicy) withDefaults() SessionPolicy {
	if p.Idle <= 0 {
		p.Idle = time.Hour
	}
	if p.Absolute <= 0 {
		p.Absolute = 12 * time.Hour
	}
	if p.Max <= 0 {
		p.Max = 10_000
	}
	return p
}

// sessionStore holds staff sessions in the gateway's memory. The cookie carries only a random session ID;
// the table is keyed by the ID's SHA-256, so it holds no value that could be replayed as a cookie.
// A restart of the gateway signs every staff member out.
type sessionStore struct {
	policy SessionPolicy
	now    func() time.Time

	mu   sync.Mutex
	byID map[[sha256.Size]byte]*session
}

type session struct {
	token   string // the staff token signed in with, checked again on every use so revoking it ends the session
	created time.Time
	seen    time.Time
}

func newSessionStore(p SessionPolicy) *sessionStore {
	return &sessionStore{policy: p.withDefaults(), now: time.Now, byID: map[[sha256.Size]byte]*session{}}
}

// create starts a session for token and returns its ID: 256 random bits, URL-safe.
func (s *sessionStore) create(token string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.makeRoom(now)
	s.byID[sha256.Sum256([]byte(id))] = &session{token: token, created: now, seen: now}
	return id
}

// lookup returns the token of a live session and marks it used; an expired session is dropped.
func (s *sessionStore) lookup(id string) (string, bool) {
	if id == "" {
		return "", false
	}
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[key]
	if !ok {
		return "", false
	}
	now := s.now()
	if s.expired(sess, now) {
		delete(s.byID, key)
		return "", false
	}
	sess.seen = now
	return sess.token, true
}

// revoke ends a session (sign-out, or its token no longer valid).
func (s *sessionStore) revoke(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(id)))
}

func (s *sessionStore) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.seen) >= s.policy.Idle || now.Sub(sess.created) >= s.policy.Absolute
}

// makeRoom drops expired sessions when the table is full, then the least recently used one if need be.
func (s *sessionStore) makeRoom(now time.Time) {
	if len(s.byID) < s.policy.Max {
		return
	}
	var (
		oldestKey [sha256.Size]byte
		oldest    *session
	)
	for k, sess := range s.byID {
		switch {
		case s.expired(sess, now):
			delete(s.byID, k)
		case oldest == nil || sess.seen.Before(oldest.seen):
			oldestKey, oldest = k, sess
		}
	}
	if len(s.byID) >= s.policy.Max && oldest != nil {
		delete(s.byID, oldestKey)
	}
}

func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
