package tokenhash

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestOwner(t *testing.T) {
	source := map[string]string{"alice": Hash("tok-alice"), "broken": "zz"}
	loads := 0
	r := New(func(context.Context) (map[string]string, error) {
		loads++
		return source, nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Unix(0, 0)
	r.now = func() time.Time { return now }
	slept := time.Duration(0)
	r.sleep = func(_ context.Context, d time.Duration) error { slept += d; now = now.Add(d); return nil }
	ctx := context.Background()

	tests := []struct {
		token, owner string
		err          error
	}{
		{"tok-alice", "alice", nil},
		{"tok-bob", "", ErrUnknownToken},
		{"", "", ErrUnknownToken},
		{Hash("tok-alice"), "", ErrUnknownToken}, // the hash itself is not a token
	}
	for _, tt := range tests {
		owner, err := r.Owner(ctx, tt.token)
		if owner != tt.owner || !errors.Is(err, tt.err) {
			t.Errorf("Owner(%q) = %q, %v; want %q, %v", tt.token, owner, err, tt.owner, tt.err)
		}
	}

	// A token issued after the last load works at once, though unknown tokens reload at most every MinReload:
	// the request waits for the reload rather than being refused.
	source["bob"] = Hash("tok-bob")
	before, sleptBefore := loads, slept
	if owner, err := r.Owner(ctx, "tok-bob"); owner != "bob" || err != nil {
		t.Fatalf("new token: %q, %v; want bob", owner, err)
	}
	if loads != before+1 || slept-sleptBefore != r.MinReload {
		t.Errorf("reloads %d after waiting %s; want 1 after %s (the last load was just now)", loads-before, slept-sleptBefore, r.MinReload)
	}
	// Guesses cost a wait each and at most one load per MinReload.
	before = loads
	for range 3 {
		if _, err := r.Owner(ctx, "guess"); !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("guess: %v", err)
		}
	}
	if loads-before != 3 || slept-sleptBefore != 4*r.MinReload {
		t.Errorf("3 guesses: %d loads after %s of waiting; want 3 loads, one per %s", loads-before, slept-sleptBefore-r.MinReload, r.MinReload)
	}

	// Revoked: gone after the next reload.
	delete(source, "alice")
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Owner(ctx, "tok-alice"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("revoked token: %v; want ErrUnknownToken", err)
	}
}
