package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/pizzajoint/mesh/order/mysqlstore"
)

// testHooks are the order binary's test-only hooks, here and nowhere else in it. The e2e stack is built from
// this binary, so the hooks cannot live in a test package; each is inert unless set, only `serve` honours them,
// and no deployment sets them. scripts/stack.sh gives ORDER_TEST_HOLD_COMMIT_FILE to the one instance the
// INSERT/COMMIT fault test starts for itself (ORDER_TEST_HOLD_COMMIT_FILE_3) and unsets it for every other, and
// the e2e suite fails if another instance's log shows "TEST ONLY".
type testHooks struct {
	// HoldCommitFile: while this file exists, every new order's transaction waits after its INSERTs and
	// before COMMIT (e2e/faults_test.go kills the process there).
	HoldCommitFile string `conf:"help:TEST ONLY: hold new orders' transactions before COMMIT while this file exists"`
}

// storeOptions are the store options of the hooks that are set: none at all when none is.
func (h testHooks) storeOptions(logger *slog.Logger) []mysqlstore.Option {
	if h.HoldCommitFile == "" {
		return nil
	}
	logger.Warn("TEST ONLY: new orders wait before COMMIT while the hold file exists", "file", h.HoldCommitFile)
	return []mysqlstore.Option{mysqlstore.WithBeforeCommitHook(holdWhileExists(h.HoldCommitFile, 50*time.Millisecond))}
}

// holdWhileExists returns a hook that waits while file exists (looking every poll) or until its ctx ends.
func holdWhileExists(file string, poll time.Duration) func(context.Context) {
	return func(ctx context.Context) {
		for {
			if _, err := os.Stat(file); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(poll):
			}
		}
	}
}
