// Package tokenhash checks bearer tokens against a list of their SHA-256 hashes (the tokens themselves are
// stored nowhere). The list is loaded from a source (Vault KV in the gateway), again periodically, and again
// when a token is not found, so a token an operator just issued works at once and a revoked one stops working
// within the reload interval. Reloads for unknown tokens happen one at a time and at most every MinReload:
// guessing costs the guesser time and the source nothing more.
package tokenhash

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Load returns the hashes by owner name (hex SHA-256 of each token).
type Load func(ctx context.Context) (map[string]string, error)

// Registry answers who a token belongs to.
type Registry struct {
	load   Load
	logger *slog.Logger
	now    func() time.Time

	// MinReload bounds reloads triggered by unknown tokens, so guessing cannot hammer the source.
	MinReload time.Duration

	sleep func(ctx context.Context, d time.Duration) error

	reloading sync.Mutex // one reload for unknown tokens at a time
	mu        sync.Mutex
	hashes    map[string][32]byte
	loadedAt  time.Time
}

// ErrUnknownToken is a token that belongs to nobody.
var ErrUnknownToken = errors.New("unknown token")

// New returns a Registry loading from load.
func New(load Load, logger *slog.Logger) *Registry {
	return &Registry{load: load, logger: logger.With("component", "tokenhash"), now: time.Now, sleep: sleepCtx,
		MinReload: 2 * time.Second}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Hash is the hex SHA-256 of a token, as stored in the source.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Owner returns the name the token belongs to.
func (r *Registry) Owner(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", ErrUnknownToken
	}
	sum := sha256.Sum256([]byte(token))
	if name, ok := r.find(sum); ok {
		return name, nil
	}
	missed := r.now()
	r.reloading.Lock()
	defer r.reloading.Unlock()
	r.mu.Lock()
	loadedAt := r.loadedAt
	r.mu.Unlock()
	if !loadedAt.After(missed) { // nobody reloaded since this token was missed
		if wait := r.MinReload - r.now().Sub(loadedAt); wait > 0 {
			if err := r.sleep(ctx, wait); err != nil {
				return "", err
			}
		}
		if err := r.Reload(ctx); err != nil {
			return "", err
		}
	}
	if name, ok := r.find(sum); ok {
		return name, nil
	}
	return "", ErrUnknownToken
}

func (r *Registry) find(sum [32]byte) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	found := ""
	for name, h := range r.hashes {
		// Compare every entry in constant time; which one matched must not show in the timing.
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			found = name
		}
	}
	return found, found != ""
}

// Reload reads the source now.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	r.loadedAt = r.now() // also on failure: a broken source is retried at the MinReload pace
	r.mu.Unlock()
	raw, err := r.load(ctx)
	if err != nil {
		return err
	}
	hashes := make(map[string][32]byte, len(raw))
	for name, h := range raw {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			r.logger.Warn("ignoring a malformed token hash", "owner", name)
			continue
		}
		hashes[name] = [32]byte(b)
	}
	r.mu.Lock()
	r.hashes = hashes
	r.mu.Unlock()
	return nil
}

// Run reloads every interval until ctx ends.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("reloading token hashes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
