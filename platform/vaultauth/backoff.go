package vaultauth

import (
	"context"
	"time"
)

// Backoff doubles a delay from base up to limit, for retrying Vault while it is away.
type Backoff struct{ base, limit, cur time.Duration }

// NewBackoff returns a Backoff whose first delay is base.
func NewBackoff(base, limit time.Duration) *Backoff { return &Backoff{base: base, limit: limit} }

// Next returns the delay before the next attempt.
func (b *Backoff) Next() time.Duration {
	b.cur = min(max(b.cur*2, b.base), b.limit)
	return b.cur
}

// Reset starts again from base, after a success.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
