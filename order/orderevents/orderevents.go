// Package orderevents opens the order service's event path: the NATS connection (through the instance's
// sidecar upstream, as the instance's own NATS user), the relay that publishes the event log's outbox to
// JetStream, and the streams served from it.
package orderevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/pizzajoint/mesh/order"
	"github.com/pizzajoint/mesh/order/eventrelay"
	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/httpserver"
)

// Config is where the events go. Every field has an ORDER_EVENTS_* variable.
type Config struct {
	NATS struct {
		// URL is the sidecar's upstream to NATS: the instance never reaches NATS but through the mesh.
		URL string `conf:"default:nats://127.0.0.1:4222,help:NATS through this instance's sidecar upstream"`
		// SeedFile holds the instance's NATS nkey seed, delivered by meshctl into its credentials folder.
		SeedFile string        `conf:"help:file holding this instance's NATS nkey seed"`
		Name     string        `conf:"default:order,help:connection name shown in NATS's monitoring"`
		Timeout  time.Duration `conf:"default:5s,help:bound of each NATS call (connect, publish, stream lookups)"`
		// SeedCheck is how often the seed file is read for a rotated key (meshctl nats-key rotate).
		SeedCheck time.Duration `conf:"default:1s,help:how often the seed file is checked for a rotated NATS key"`
	}
	Relay struct {
		Sweep time.Duration `conf:"default:1s,help:how often the relay looks for events nothing nudged it about"`
		Batch int           `conf:"default:256,help:most events the relay reads at once"`
	}
}

// Log is what the event path needs of the store: the outbox.
type Log interface {
	order.Store
	eventrelay.Outbox
}

// Events is the opened event path.
type Events struct {
	// Store is the store the service writes through: on JetStream, each write nudges the relay.
	Store order.Store
	// Streams serves the stream endpoint.
	Streams order.EventStreams
	// Run relays the outbox until ctx ends; the caller joins it.
	Run func(ctx context.Context) error
	// Checks gate the instance's readiness. On JetStream there is none: orders keep flowing while NATS is away
	// (the outbox holds their events), and a stream that cannot be served answers 503 by itself.
	Checks []httpserver.Check
	// Close ends the NATS connection, after Run has returned.
	Close func()
}

// Open opens the event path over log, registering its metrics with reg.
func Open(ctx context.Context, cfg Config, log Log, reg prometheus.Registerer, logger *slog.Logger) (*Events, error) {
	if cfg.NATS.SeedFile == "" {
		return nil, errors.New("events on JetStream need ORDER_EVENTS_NATS_SEED_FILE (the instance's NATS key)")
	}
	if cfg.NATS.SeedCheck <= 0 {
		cfg.NATS.SeedCheck = time.Second
	}
	m, rotations := newMetrics(reg)
	conn, err := openKeyedConn(cfg, rotations, logger)
	if err != nil {
		return nil, err
	}
	relayCfg := eventrelay.DefaultConfig
	relayCfg.Sweep, relayCfg.Batch, relayCfg.Timeout = cfg.Relay.Sweep, cfg.Relay.Batch, cfg.NATS.Timeout
	relay := eventrelay.New(relayCfg, log, keyedPublisher{conn}, m, logger)
	run := func(ctx context.Context) error {
		g, ctx := errgroup.WithContext(ctx)
		g.Go(func() error { return relay.Run(ctx) })
		g.Go(func() error { return conn.watch(ctx) })
		return g.Wait()
	}
	return &Events{Store: relay.Nudging(log), Streams: keyedStreams{conn}, Run: run, Close: conn.close}, nil
}

func newMetrics(reg prometheus.Registerer) (eventrelay.Metrics, func()) {
	published := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pizza", Subsystem: "order",
		Name: "events_relayed_total", Help: "Events the relay stored in the event stream."})
	dups := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pizza", Subsystem: "order",
		Name: "events_relayed_duplicate_total", Help: "Events the stream already held when the relay published them."})
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "pizza", Subsystem: "order",
		Name: "event_relay_lag_seconds", Help: "Age of the oldest event not yet relayed to the stream (0: caught up)."})
	rotations := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "pizza", Subsystem: "order",
		Name: "nats_key_rotations_total", Help: "Times the event path moved to a connection with a rotated NATS key."})
	reg.MustRegister(published, dups, lag, rotations)
	return eventrelay.Metrics{Published: published.Inc, Duplicates: dups.Inc, Lag: func(d time.Duration) { lag.Set(d.Seconds()) }}, rotations.Inc
}

// Upstreams are the mesh upstreams the event path needs: NATS on the local port of cfg.NATS.URL, through the
// instance's sidecar.
func (c Config) Upstreams() ([]consulreg.Upstream, error) {
	up, err := consulreg.UpstreamAt("nats", c.NATS.URL)
	if err != nil {
		return nil, fmt.Errorf("ORDER_EVENTS_NATS_URL: %w", err)
	}
	return []consulreg.Upstream{up}, nil
}
