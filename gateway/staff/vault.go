package staff

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pizzajoint/mesh/platform/tokenhash"
	"github.com/pizzajoint/mesh/platform/vaultauth"
	"github.com/pizzajoint/mesh/platform/vaultkv"
)

// Config is where staff token hashes are read and how long sessions last. Its field names and tags are the
// environment's (GATEWAY_STAFF_…) and the flags' names: renaming one breaks deployments.
type Config struct {
	TokensPath string        `conf:"default:secret/data/pizza/staff-tokens"`
	Reload     time.Duration `conf:"default:30s"`
	// A staff session ends after SessionIdle unused, or SessionMax after sign-in.
	SessionIdle time.Duration `conf:"default:1h"`
	SessionMax  time.Duration `conf:"default:12h"`
}

// FromVault logs in to Vault as the gateway and checks staff tokens against the hashes in KV. Without Vault
// settings staff sign-in is off: a nil Auth (the staff routes answer 503). run keeps the Vault login and the
// hashes fresh until ctx ends; it is for the process's errgroup, and does nothing when sign-in is off.
func FromVault(vc vaultauth.Config, c Config, logger *slog.Logger) (auth *Auth, run func(ctx context.Context), err error) {
	if !vc.Enabled() {
		logger.Warn("no Vault settings: staff sign-in is off")
		return nil, func(context.Context) {}, nil
	}
	session, err := vaultauth.New(vc, logger)
	if err != nil {
		return nil, nil, err
	}
	kv := vaultkv.New(session)
	registry := tokenhash.New(func(ctx context.Context) (map[string]string, error) {
		return kv.Strings(ctx, c.TokensPath) // no secret yet: no staff token issued
	}, logger)
	run = func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { session.Run(ctx) })
		wg.Go(func() { registry.Run(ctx, c.Reload) })
		wg.Wait()
	}
	return NewAuth(registry, logger, SessionPolicy{Idle: c.SessionIdle, Absolute: c.SessionMax}), run, nil
}
