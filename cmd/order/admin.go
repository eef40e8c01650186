package main

// The one-shot commands: schema and partition maintenance on the schema owner's credentials, and the PII
// keys' rewrap. Like serve, they open the database through orderdb.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pizzajoint/mesh/order/mysqlstore"
	"github.com/pizzajoint/mesh/order/mysqlstore/partitions"
	"github.com/pizzajoint/mesh/order/orderdb"
)

// rewrapPII re-encrypts stored PII data keys to the newest transit key version (after an operator rotated it).
// It logs in like the service: the runtime role may update orders, and its policy allows transit/rewrap.
func rewrapPII(ctx context.Context, cfg config, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	b, err := orderdb.Open(ctx, cfg.Config, logger)
	if err != nil {
		return err
	}
	defer b.Close()
	if !b.UsesVault() {
		return errors.New("rewrap-pii needs Vault (ORDER_VAULT_ROLE_ID_FILE and ORDER_VAULT_SECRET_ID_FILE, or ORDER_VAULT_AUTH_METHOD=kubernetes)")
	}
	if err := b.WaitReady(ctx); err != nil {
		return err
	}
	changed, err := b.Store.RewrapPII(ctx)
	if err != nil {
		return err
	}
	logger.Info("PII data keys rewrapped to the newest transit key version", "changed", changed)
	return nil
}

// maintainSchema runs migrate (the schema up to date, then the partitions, within 5 minutes) or
// maintain-partitions (once, or every Partitions.Every until stopped) on the schema owner's credentials (the
// runtime role has no DDL rights). Several running at once is safe: one works, the others skip (a named lock).
func maintainSchema(ctx context.Context, cfg config, cmd string, logger *slog.Logger) error {
	if cmd == "migrate" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	db, closeDB, err := orderdb.OpenDDL(ctx, cfg.Config, cmd, logger)
	if err != nil {
		return err
	}
	defer closeDB()
	policy := cfg.Partitions.Policy
	if cmd == "migrate" {
		applied, err := mysqlstore.Migrate(ctx, db)
		if err != nil {
			return err
		}
		logger.Info("schema up to date", "applied", applied)
		// The partitioned tables need their months before the first order: the same DDL user does it now.
	} else if cfg.Partitions.Every > 0 {
		partitions.Run(ctx, db, policy, cfg.Partitions.Every, logger)
		return nil
	}
	rep, err := partitions.Maintain(ctx, db, time.Now(), policy)
	if err != nil {
		return err
	}
	logger.Info("partitions maintained", "added", rep.Added, "dropped", rep.Dropped, "skipped", rep.Skipped,
		"purged_idempotency_keys", rep.PurgedKeys)
	return nil
}
