// Package clientlimit limits what one client may do: how often it may make a request, and how many
// long-lived requests (event streams) it may hold open. Clients are told apart by their IP address; the
// tables are bounded, and a client that has been quiet long enough is forgotten.
package clientlimit

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ClientKey is the client's IP address, or for IPv6 its /64: one subscriber commonly holds a whole /64, so
// per address it could take a fresh bucket with every request. The gateway is the public edge, with no proxy
// in front of it, so X-Forwarded-For (which any client can write) is never trusted.
func ClientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// RateLimiter gives each client a token bucket of Burst requests, refilled at PerSecond. A nil
// *RateLimiter allows everything.
type RateLimiter struct {
	limit      rate.Limit
	burst      int
	maxClients int
	idle       time.Duration // after this long unseen, a client's bucket is full again: forget it
	now        func() time.Time

	mu      sync.Mutex
	clients map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRateLimiter returns a limiter of perSecond requests with bursts of burst per client, tracking at most
// maxClients clients; perSecond ≤ 0 means no limit (nil).
func NewRateLimiter(perSecond float64, burst, maxClients int) *RateLimiter {
	if perSecond <= 0 {
		return nil
	}
	burst, maxClients = max(burst, 1), max(maxClients, 1)
	refill := time.Duration(float64(burst) / perSecond * float64(time.Second))
	return &RateLimiter{limit: rate.Limit(perSecond), burst: burst, maxClients: maxClients,
		idle: max(refill, time.Second), now: time.Now, clients: map[string]*bucket{}}
}

// Allow takes one request from key's bucket. When the bucket is empty it answers false and how long until a
// request would be allowed.
func (l *RateLimiter) Allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.clients[key]
	if !ok {
		l.makeRoom(now)
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request costs nothing
		return false, d
	}
	return true, 0
}

// Peek answers whether key's next request would be allowed, and if not how long until it would, without
// taking anything from its bucket: for limits charged only on failure (a wrong token), checked before the work.
func (l *RateLimiter) Peek(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.clients[key]
	if !ok {
		return true, 0 // an unknown client's bucket is full
	}
	now := l.now()
	r := b.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d <= 0, max(d, 0)
}

// makeRoom keeps the table under maxClients: first it forgets idle clients (their buckets are full anyway);
// if every client is active, it forgets one at random, which only ever lets that client burst again.
func (l *RateLimiter) makeRoom(now time.Time) {
	if len(l.clients) < l.maxClients {
		return
	}
	for k, b := range l.clients {
		if now.Sub(b.seen) > l.idle {
			delete(l.clients, k)
		}
	}
	for k := range l.clients {
		if len(l.clients) < l.maxClients {
			return
		}
		delete(l.clients, k)
	}
}

// Len is how many clients are tracked.
func (l *RateLimiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// Errors of StreamLimiter.Acquire.
var (
	ErrClientStreams = errors.New("too many open streams from this client")
	ErrTotalStreams  = errors.New("too many open streams on this server")
)

// StreamLimiter caps open streams per client and in total. A nil *StreamLimiter caps nothing.
type StreamLimiter struct {
	perClient, total int

	mu   sync.Mutex
	open map[string]int
	n    int
}

// NewStreamLimiter caps streams at perClient per client and total in all; a cap ≤ 0 is no cap.
func NewStreamLimiter(perClient, total int) *StreamLimiter {
	return &StreamLimiter{perClient: perClient, total: total, open: map[string]int{}}
}

// Acquire counts a new stream of key, or refuses it with ErrClientStreams or ErrTotalStreams. release must be
// called once when the stream ends.
func (l *StreamLimiter) Acquire(key string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total > 0 && l.n >= l.total:
		return nil, ErrTotalStreams
	case l.perClient > 0 && l.open[key] >= l.perClient:
		return nil, ErrClientStreams
	}
	l.n++
	l.open[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.n--
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key) // the table holds only clients with open streams
			}
		})
	}, nil
}

// Open is how many streams are open, in total and for key.
func (l *StreamLimiter) Open(key string) (total, client int) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.open[key]
}
