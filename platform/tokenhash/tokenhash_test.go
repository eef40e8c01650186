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

	// A token issued after the last load works at once; unknown tokens reload at most every MinReload.
	source["bob"] = Hash("tok-bob")
	before := loads
	if _, err := r.Owner(ctx, "tok-bob"); err == nil {
		t.Fatal("bob's token worked before a reload was due")
	}
	now = now.Add(3 * time.Second)
	if owner, err := r.Owner(ctx, "tok-bob"); owner != "bob" || err != nil {
		t.Fatalf("after MinReload: %q, %v; want bob", owner, err)
	}
	if loads != before+1 {
		t.Errorf("loads = %d, want %d", loads-before, 1)
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
