package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/pizzajoint/mesh/platform/tracing"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"log/slog"
	"sync"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/discard"
	"github.com/pizzajoint/mesh/order"
)

// Replica sends the store's customer and staff reads (Get, List) to a MariaDB replica, with read-your-writes.
//
// Read-your-writes is a causal read: before reading from the replica, the store asks the primary for its
// binary log position (@@gtid_binlog_pos, a variable read that touches no table) and has the replica wait
// until it has applied that position (MASTER_GTID_WAIT, bounded by WaitTimeout). Whatever was committed before
// the read began, by any order instance, is then on the replica, so a customer who just ordered never gets a
// 404 and a staff member who just moved an order sees its new status. It needs no change to the API: the
// gateway→order path is stateless HTTP, and any order instance may serve the read after another one wrote.
// The price is two small round trips per read. The alternative, falling back to the primary on a miss, can
// catch a 404 but not a stale status without a version carried through the API.
//
// A replica that is down, fails a query, lags more than MaxLag or has stopped replicating is not used: reads go
// to the primary (a log line at each change, and metrics), readiness stays true, and the monitor puts the
// replica back when it has caught up. MariaDB only: MySQL 8 would use @@gtid_executed and
// WAIT_FOR_EXECUTED_GTID_SET (untested).
type Replica struct {
	db     *sql.DB
	cfg    ReplicaConfig
	m      ReplicaMetrics
	logger *slog.Logger

	mu     sync.Mutex
	usable bool   // reads may go to the replica
	reason string // why not, when not usable
}

// ReplicaConfig bounds how stale and how slow the replica may be before reads skip it.
type ReplicaConfig struct {
	// MaxLag: a replica further behind the primary than this gets no reads until it has caught up. It is also
	// the longest a read waits for the replica to reach the primary's position before going to the primary.
	MaxLag time.Duration `conf:"default:200ms"`
	// CheckInterval is how often the heartbeat is written and the replica's lag measured.
	CheckInterval time.Duration `conf:"default:1s"`
	// Timeout bounds any query on the replica (a dead host must not hold a read for the dial timeout).
	Timeout time.Duration `conf:"default:1s"`
}

// ReplicaMetrics are the replica's gauges and counters; nil ones are discarded.
type ReplicaMetrics struct {
	Lag    metrics.Gauge   // seconds behind the primary, as last measured
	Usable metrics.Gauge   // 1 while reads go to the replica, else 0
	Reads  metrics.Counter // labels: pool (replica|primary), reason
}

// NewReplica returns a replica for WithReplica. Call the store's MonitorReplica to start using it.
func NewReplica(db *sql.DB, cfg ReplicaConfig, m ReplicaMetrics, logger *slog.Logger) *Replica {
	if m.Lag == nil {
		m.Lag = discard.NewGauge()
	}
	if m.Usable == nil {
		m.Usable = discard.NewGauge()
	}
	if m.Reads == nil {
		m.Reads = discard.NewCounter()
	}
	m.Usable.Set(0)
	return &Replica{db: db, cfg: cfg, m: m, logger: logger.With("component", "db-replica"), reason: "not checked yet"}
}

// WithReplica sends reads to r (see Replica).
func WithReplica(r *Replica) Option { return func(s *Store) { s.replica = r } }

// setUsable records the replica's state; a change is logged once.
func (r *Replica) setUsable(ok bool, reason string) {
	r.mu.Lock()
	changed := r.usable != ok
	r.usable, r.reason = ok, reason
	r.mu.Unlock()
	if ok {
		r.m.Usable.Set(1)
	} else {
		r.m.Usable.Set(0)
	}
	if !changed {
		return
	}
	if ok {
		r.logger.Info("database replica in use: reads go to the replica")
	} else {
		r.logger.Warn("database replica not in use: reads go to the primary", "reason", reason)
	}
}

// Usable reports whether reads go to the replica now.
func (r *Replica) Usable() bool { return r.isUsable() }

func (r *Replica) isUsable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.usable
}

func (r *Replica) count(pool, reason string) { r.m.Reads.With("pool", pool, "reason", reason).Add(1) }

// readFunc reads on db. With a non-empty waitFor (a GTID position; only on the replica) it must first have db
// wait up to maxWait for that position (see waitFor), and report caughtUp false, reading nothing more, when
// it was not reached; it may send the wait in the same batch as its reads.
type readFunc func(ctx context.Context, db *sql.DB, waitFor string, maxWait time.Duration) (caughtUp bool, err error)

// read runs fn on the replica when it is usable and has applied everything the primary had committed when the
// read began, and on the primary otherwise. A replica failure during fn is retried on the primary, so the
// caller sees the primary's answer or error, never the replica's. A nil Replica (none configured) reads on
// the primary.
func (r *Replica) read(ctx context.Context, primary *sql.DB, fn readFunc) (err error) {
	// The read's span says where it was answered and why, and holds the read-your-writes wait.
	ctx, span := tracing.Span(ctx, "store read", semconv.DBSystemNameMariaDB)
	pool, reason := "primary", "no_replica"
	defer func() {
		span.SetAttributes(attribute.String("pizza.db.pool", pool), attribute.String("pizza.db.reason", reason))
		tracing.End(span, err)
	}()
	onPrimary := func() error { _, err := fn(ctx, primary, "", 0); return err }
	if r == nil {
		return onPrimary()
	}
	count := func(p, why string) { pool, reason = p, why; r.count(p, why) }
	if !r.isUsable() {
		count("primary", "replica_not_usable")
		return onPrimary()
	}
	var pos string
	if err := primary.QueryRowContext(ctx, `SELECT @@gtid_binlog_pos`).Scan(&pos); err != nil {
		return fmt.Errorf("%w: primary position: %w", order.ErrUnavailable, err)
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.MaxLag+r.cfg.Timeout)
	defer cancel()
	caughtUp, err := fn(rctx, r.db, pos, r.cfg.MaxLag)
	switch {
	case err != nil && ctx.Err() == nil:
		r.setUsable(false, "query failed: "+err.Error())
		count("primary", "replica_failed")
		return onPrimary()
	case err != nil:
		return err
	case !caughtUp:
		r.setUsable(false, "a read waited "+r.cfg.MaxLag.String()+" for the replica to catch up")
		count("primary", "replica_behind")
		return onPrimary()
	}
	count("replica", "caught_up")
	return nil
}

// waitFor has the replica wait up to maxWait until it has applied pos; false if it did not get there.
func waitFor(ctx context.Context, db *sql.DB, pos string, maxWait time.Duration) (bool, error) {
	var reached sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MASTER_GTID_WAIT(?, ?)`, pos, maxWait.Seconds()).Scan(&reached); err != nil {
		return false, err
	}
	return reached.Valid && reached.Int64 == 0, nil // -1: timed out; NULL: not a replica
}

// MonitorReplica writes the heartbeat on the primary and measures the replica's lag every CheckInterval until
// ctx ends, marking the replica usable or not. Without a replica it returns at once.
func (s *Store) MonitorReplica(ctx context.Context) { s.replica.monitor(ctx, s.db) }

// monitor is MonitorReplica, with the primary's pool.
func (r *Replica) monitor(ctx context.Context, primary *sql.DB) {
	if r == nil {
		return
	}
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		lag, err := r.check(ctx, primary)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errPrimaryDown):
			// Nothing to compare with; reads fail on the primary anyway. Keep the last state.
		case err != nil:
			r.setUsable(false, err.Error())
		default:
			r.setUsable(true, "")
		}
		if lag >= 0 {
			r.m.Lag.Set(lag.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var errPrimaryDown = errors.New("heartbeat on the primary failed")

// check writes a heartbeat on the primary and waits (up to MaxLag) for the replica to apply it. The lag
// is how long that took; a replica that does not get there in time is lagging (or stopped), and its lag is
// then the age of the newest heartbeat it holds. A negative lag means it could not be measured.
func (r *Replica) check(ctx context.Context, primary *sql.DB) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.MaxLag+r.cfg.Timeout)
	defer cancel()
	conn, err := primary.Conn(ctx)
	if err != nil {
		return -1, fmt.Errorf("%w: %w", errPrimaryDown, err)
	}
	// @@last_gtid is per session: read it on the connection that wrote the heartbeat.
	beat := time.Now().UTC()
	var gtid string
	_, err = conn.ExecContext(ctx, `INSERT INTO replication_heartbeat (id, beat) VALUES (1, ?) ON DUPLICATE KEY UPDATE beat = VALUES(beat)`, beat)
	if err == nil {
		err = conn.QueryRowContext(ctx, `SELECT @@last_gtid`).Scan(&gtid)
	}
	conn.Close()
	if err != nil {
		return -1, fmt.Errorf("%w: %w", errPrimaryDown, err)
	}
	reached, err := waitFor(ctx, r.db, gtid, r.cfg.MaxLag)
	if err != nil {
		return -1, fmt.Errorf("replica down: %w", err)
	}
	if reached {
		return time.Since(beat), nil
	}
	var held time.Time
	if err := r.db.QueryRowContext(ctx, `SELECT beat FROM replication_heartbeat WHERE id = 1`).Scan(&held); err != nil {
		return -1, fmt.Errorf("replica lagging more than %s, and its heartbeat unreadable: %w", r.cfg.MaxLag, err)
	}
	lag := beat.Sub(held)
	return lag, fmt.Errorf("replica lagging: %s behind (bound %s) or not replicating", lag.Round(time.Millisecond), r.cfg.MaxLag)
}
