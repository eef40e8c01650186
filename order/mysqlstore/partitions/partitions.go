// Package partitions maintains the order tables' monthly partitions: it adds months ahead, drops months past
// the retention and purges expired idempotency keys, on a pool with the schema owner's credentials (the
// runtime role may not change the schema). The tables and their catch-all partition come from
// mysqlstore.Migrate. Its tests are mysqlstore's partitions_test.go, which checks the store's reads against
// the partitions it makes, on a real MariaDB.
package partitions

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Policy says which monthly partitions must exist and how long data is kept.
type Policy struct {
	// Ahead is how many months after the current one get their partitions in advance, so a maintenance run
	// that is late by weeks still finds the current month in place.
	Ahead int `conf:"default:3,help:months after the current one whose partitions are made in advance"`
	// RetentionMonths keeps the current month and this many before it; older months are dropped whole (orders,
	// items and events). 0 keeps everything.
	RetentionMonths int `conf:"default:0,help:months of orders kept before the current one (0: all)"`
	// IdempotencyRetention is how long an Idempotency-Key is remembered (a retry after it makes a new order).
	IdempotencyRetention time.Duration `conf:"default:24h,help:how long an Idempotency-Key is remembered"`
}

// DefaultPolicy: three months ahead, everything kept, idempotency keys for 24 hours (as Stripe does).
var DefaultPolicy = Policy{Ahead: 3, IdempotencyRetention: 24 * time.Hour}

// partitioned lists the monthly-partitioned tables and the column they are partitioned by. orders comes first,
// so when a month is dropped its orders vanish before their items and events.
var partitioned = []struct{ table, column string }{
	{"orders", "created_at"},
	{"order_items", "order_created_at"},
	{"order_events", "order_created_at"},
}

// catchAll is the MAXVALUE partition every table keeps last: rows beyond the last month (maintenance late)
// still have a home, and the next run moves them into their month.
const catchAll = "pmax"

// maintenanceLock serialises maintenance across order instances and operators (per database).
const maintenanceLock = "partition-maintenance"

// Report says what one maintenance run changed.
type Report struct {
	Skipped     bool     // another run held the lock
	Added       []string // partitions added, as table.pNAME
	Dropped     []string // partitions dropped
	PurgedKeys  int64    // idempotency keys past their retention
	MonthsAhead int
}

// Maintain adds the monthly partitions up to policy.Ahead months after now's month, drops months past the
// retention, and purges expired idempotency keys. It is idempotent, and safe to run from several processes at
// once: a named lock (GET_LOCK) lets one of them work and the others return Skipped. It needs ALTER and DROP
// on the tables (the migration role), which the runtime role does not have.
func Maintain(ctx context.Context, db *sql.DB, now time.Time, policy Policy) (Report, error) {
	var rep Report
	conn, err := db.Conn(ctx)
	if err != nil {
		return rep, err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(CONCAT(DATABASE(), '.', ?), 0)`, maintenanceLock).Scan(&got); err != nil {
		return rep, fmt.Errorf("maintenance lock: %w", err)
	}
	if got.Int64 != 1 {
		rep.Skipped = true
		return rep, nil
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `DO RELEASE_LOCK(CONCAT(DATABASE(), '.', ?))`, maintenanceLock)

	current := monthOf(now)
	last := current.AddDate(0, policy.Ahead, 0)
	for _, p := range partitioned {
		added, err := addMonths(ctx, conn, p.table, p.column, current, last)
		if err != nil {
			return rep, err
		}
		rep.Added = append(rep.Added, added...)
	}
	if policy.RetentionMonths > 0 {
		oldestKept := current.AddDate(0, -policy.RetentionMonths, 0)
		for _, p := range partitioned {
			dropped, err := dropBefore(ctx, conn, p.table, oldestKept)
			if err != nil {
				return rep, err
			}
			rep.Dropped = append(rep.Dropped, dropped...)
		}
	}
	if policy.IdempotencyRetention > 0 {
		n, err := purgeIdempotencyKeys(ctx, conn, now.Add(-policy.IdempotencyRetention))
		rep.PurgedKeys = n
		if err != nil {
			return rep, err
		}
	}
	rep.MonthsAhead = policy.Ahead
	return rep, nil
}

// Run runs Maintain now and then every interval until ctx ends. A failed run is logged and tried again at the
// next tick: the catch-all partition keeps writes working meanwhile.
func Run(ctx context.Context, db *sql.DB, policy Policy, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := Maintain(ctx, db, time.Now(), policy)
		switch {
		case err != nil:
			logger.Error("partition maintenance failed; retrying at the next tick", "err", err, "next_in", interval)
		case rep.Skipped:
			logger.Info("partition maintenance skipped: another process holds the lock")
		default:
			logger.Info("partition maintenance done", "added", rep.Added, "dropped", rep.Dropped, "purged_idempotency_keys", rep.PurgedKeys)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func partitionName(month time.Time) string { return month.Format("p200601") }

// monthPartitions returns the table's monthly partitions in order, by the month each holds.
func monthPartitions(ctx context.Context, conn *sql.Conn, table string) ([]time.Time, bool, error) {
	rows, err := conn.QueryContext(ctx, `SELECT PARTITION_NAME FROM information_schema.PARTITIONS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION`, table)
	if err != nil {
		return nil, false, fmt.Errorf("list partitions of %s: %w", table, err)
	}
	defer rows.Close()
	var (
		months   []time.Time
		hasCatch bool
	)
	for rows.Next() {
		var name sql.NullString
		if err := rows.Scan(&name); err != nil {
			return nil, false, err
		}
		if !name.Valid {
			return nil, false, fmt.Errorf("table %s is not partitioned: run the migrations first", table)
		}
		if name.String == catchAll {
			hasCatch = true
			continue
		}
		m, err := time.Parse("p200601", name.String)
		if err != nil {
			return nil, false, fmt.Errorf("table %s: partition %q is not one of ours", table, name.String)
		}
		months = append(months, m)
	}
	return months, hasCatch, rows.Err()
}

// addMonths splits the catch-all partition so every month from the first one needed through last has its own
// partition. The first one needed is the month after the newest existing one; on a table that has none yet,
// the month of its oldest row (orders from before partitioning) or the current month.
func addMonths(ctx context.Context, conn *sql.Conn, table, column string, current, last time.Time) ([]string, error) {
	months, hasCatch, err := monthPartitions(ctx, conn, table)
	if err != nil {
		return nil, err
	}
	if !hasCatch {
		return nil, fmt.Errorf("table %s has no %s partition", table, catchAll)
	}
	first := current
	if len(months) > 0 {
		first = months[len(months)-1].AddDate(0, 1, 0)
	} else {
		var oldest sql.NullTime
		if err := conn.QueryRowContext(ctx, `SELECT MIN(`+column+`) FROM `+table).Scan(&oldest); err != nil {
			return nil, fmt.Errorf("oldest row of %s: %w", table, err)
		}
		if oldest.Valid && oldest.Time.Before(first) {
			first = monthOf(oldest.Time)
		}
	}
	var (
		defs  []string
		names []string
	)
	for m := first; !m.After(last); m = m.AddDate(0, 1, 0) {
		defs = append(defs, fmt.Sprintf("PARTITION %s VALUES LESS THAN ('%s')", partitionName(m), m.AddDate(0, 1, 0).Format("2006-01-02 15:04:05")))
		names = append(names, table+"."+partitionName(m))
	}
	if len(defs) == 0 {
		return nil, nil
	}
	// Rows already in the catch-all (from before partitioning, or written while maintenance was late) move to
	// their months; an empty catch-all makes this a quick metadata change.
	stmt := `ALTER TABLE ` + table + ` REORGANIZE PARTITION ` + catchAll + ` INTO (` + strings.Join(defs, ", ") +
		`, PARTITION ` + catchAll + ` VALUES LESS THAN (MAXVALUE))`
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		return nil, fmt.Errorf("add partitions to %s: %w", table, err)
	}
	return names, nil
}

// dropBefore drops the table's months older than oldestKept.
func dropBefore(ctx context.Context, conn *sql.Conn, table string, oldestKept time.Time) ([]string, error) {
	months, _, err := monthPartitions(ctx, conn, table)
	if err != nil {
		return nil, err
	}
	var names, qualified []string
	for _, m := range months {
		if m.Before(oldestKept) {
			names = append(names, partitionName(m))
			qualified = append(qualified, table+"."+partitionName(m))
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	if _, err := conn.ExecContext(ctx, `ALTER TABLE `+table+` DROP PARTITION `+strings.Join(names, ", ")); err != nil {
		return nil, fmt.Errorf("drop partitions of %s: %w", table, err)
	}
	return qualified, nil
}

// purgeIdempotencyKeys deletes keys older than before, in small batches so no long lock holds up new orders.
func purgeIdempotencyKeys(ctx context.Context, conn *sql.Conn, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := conn.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < ? LIMIT 1000`, before.UTC())
		if err != nil {
			return total, fmt.Errorf("purge idempotency keys: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < 1000 {
			return total, nil
		}
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
