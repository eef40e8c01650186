package orderevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/eventrelay"
	"github.com/pizzajoint/mesh/order/eventstream"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

// errKeyRotated ends a stream served on a connection that a connection under the instance's new NATS key
// replaced. The client resumes with Last-Event-ID and is served from the new connection.
var errKeyRotated = fmt.Errorf("%w: the NATS key was rotated; reconnect with Last-Event-ID", order.ErrUnavailable)

// natsConn is one connection to NATS under one key, with the publisher and the streams on it.
type natsConn struct {
	nc        *nats.Conn
	publicKey string
	pub       *eventstream.Publisher
	streams   *eventstream.Streams
	// retired ends when a connection under a newer key replaced this one: the streams on it end.
	retired context.Context
	retire  context.CancelFunc
	closed  chan struct{} // closed by the client when the connection is closed
	// use is held shared by each publish and exclusively by the retirement, which so waits for the publishes
	// in flight; closing (set under it) sends later publishes to the connection that replaced this one.
	use     sync.RWMutex
	closing bool
}

// keyedConn is the event path's NATS connection. nats.go fixes an nkey's public key when the option is made,
// so a rotated key needs a new connection: watch opens one when the instance's seed file holds a new key,
// swaps it in for the relay and for new streams, and drains the previous one.
type keyedConn struct {
	cfg       Config
	logger    *slog.Logger
	rotations func()
	cur       atomic.Pointer[natsConn]
}

func openKeyedConn(cfg Config, rotations func(), logger *slog.Logger) (*keyedConn, error) {
	k := &keyedConn{cfg: cfg, logger: logger.With("component", "nats"), rotations: rotations}
	// The first connection outlives any outage: the outbox keeps the events, and the relay catches up on
	// reconnect.
	c, err := k.dial(true)
	if err != nil {
		return nil, err
	}
	k.cur.Store(c)
	k.logger.Info("NATS connection opened", "public_key", c.publicKey)
	return k, nil
}

// dial connects with the key in the seed file. retry keeps trying in the background when the server does not
// answer yet (the first connection); a rotation's connection must be admitted now, or it is tried again later.
func (k *keyedConn) dial(retry bool) (*natsConn, error) {
	key, err := nats.NkeyOptionFromSeed(k.cfg.NATS.SeedFile)
	if err != nil {
		return nil, fmt.Errorf("NATS key: %w", err)
	}
	var o nats.Options
	if err := key(&o); err != nil {
		return nil, fmt.Errorf("NATS key: %w", err)
	}
	c := &natsConn{publicKey: o.Nkey, closed: make(chan struct{})}
	c.retired, c.retire = context.WithCancel(context.Background())
	log := k.logger.With("public_key", c.publicKey)
	// A cluster's servers tell clients each other's addresses; the instance ignores them and always reconnects
	// through its sidecar, which picks a healthy server.
	c.nc, err = nats.Connect(k.cfg.NATS.URL, key, nats.Name(k.cfg.NATS.Name), nats.Timeout(k.cfg.NATS.Timeout),
		nats.IgnoreDiscoveredServers(), nats.RetryOnFailedConnect(retry), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DrainTimeout(k.cfg.NATS.Timeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if c.retired.Err() == nil {
				log.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS error", "error", err) }))
	if err != nil {
		c.retire()
		return nil, fmt.Errorf("NATS at %s: %w", k.cfg.NATS.URL, err)
	}
	js, err := jetstream.New(c.nc, jetstream.WithDefaultTimeout(k.cfg.NATS.Timeout))
	if err != nil {
		c.nc.Close()
		c.retire()
		return nil, err
	}
	c.pub, c.streams = eventstream.NewPublisher(js), eventstream.NewStreams(js)
	return c, nil
}

// watch checks the seed file every SeedCheck until ctx ends, and moves to a new key when it holds one.
func (k *keyedConn) watch(ctx context.Context) error {
	t := time.NewTicker(k.cfg.NATS.SeedCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		seed, err := os.ReadFile(k.cfg.NATS.SeedFile)
		if err != nil {
			continue // being replaced, or gone: the connection keeps its key
		}
		pub, err := natsauth.PublicKeyOf(seed)
		clear(seed)
		if err != nil || pub == k.cur.Load().publicKey {
			continue
		}
		k.rotate(ctx)
	}
}

// rotate opens a connection with the seed file's key, swaps it in, then retires the previous one. Until the
// server admits the new key (it rereads its authorization after meshctl wrote the seed) the previous
// connection stays, and the next check tries again.
func (k *keyedConn) rotate(ctx context.Context) {
	next, err := k.dial(false)
	if err != nil {
		k.logger.Warn("NATS key rotated, but no connection with it yet; trying again", "error", err)
		return
	}
	prev := k.cur.Swap(next)
	k.logger.Info("NATS key rotated: events go through a connection with the new key",
		"public_key", next.publicKey, "previous_public_key", prev.publicKey)
	k.retireConn(ctx, prev)
	if k.rotations != nil {
		k.rotations()
	}
}

// retireConn ends the streams on c (their clients resume on the new connection), waits for the publishes in
// flight on it, then drains and closes it. A publish cut short is not lost: the relay marks an event only after
// its acknowledgement, and the stream's dedup drops a republish.
func (k *keyedConn) retireConn(ctx context.Context, c *natsConn) {
	c.retire()
	c.use.Lock()
	c.closing = true
	c.use.Unlock()
	if err := c.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		c.nc.Close()
	}
	select {
	case <-c.closed:
	case <-time.After(k.cfg.NATS.Timeout + time.Second):
		c.nc.Close()
	case <-ctx.Done():
		c.nc.Close()
	}
	k.logger.Info("NATS connection with the previous key closed", "previous_public_key", c.publicKey)
}

// close closes the connection in use, once the relay and the watcher have stopped.
func (k *keyedConn) close() {
	c := k.cur.Load()
	c.retire()
	c.nc.Close()
}

// acquire returns the connection in use, held for one publish (release with use.RUnlock).
func (k *keyedConn) acquire() *natsConn {
	for {
		c := k.cur.Load()
		c.use.RLock()
		if !c.closing {
			return c
		}
		c.use.RUnlock() // retired since it was loaded: its successor is in place
	}
}

// keyedPublisher publishes through the connection in use.
type keyedPublisher struct{ k *keyedConn }

var _ eventrelay.Publisher = keyedPublisher{}

func (p keyedPublisher) Publish(ctx context.Context, e order.Event) (bool, error) {
	c := p.k.acquire()
	defer c.use.RUnlock()
	return c.pub.Publish(ctx, e)
}

// keyedStreams serves each new stream from the connection in use; a stream ends when its connection retires.
type keyedStreams struct{ k *keyedConn }

var _ order.EventStreams = keyedStreams{}

func (s keyedStreams) Ready(ctx context.Context) error { return s.k.cur.Load().streams.Ready(ctx) }

func (s keyedStreams) Stream(ctx context.Context, req order.StreamRequest, heartbeat time.Duration, send func(order.Event) error, idle func() error) error {
	c := s.k.cur.Load()
	if c.retired.Err() != nil { // retired since it was loaded: its successor is in place (or the path is closing)
		c = s.k.cur.Load()
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.retired, cancel)
	defer stop()
	err := c.streams.Stream(sctx, req, heartbeat, send, idle)
	if err != nil && ctx.Err() == nil && c.retired.Err() != nil {
		return errKeyRotated
	}
	return err
}
