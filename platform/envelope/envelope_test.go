package envelope

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTransit wraps data keys by prefixing a version and keeping the plaintext in a map.
type fakeTransit struct {
	mu       sync.Mutex
	keys     map[string][]byte
	version  int
	dataKeys int
	unwraps  int
	down     bool
}

func newFake() *fakeTransit { return &fakeTransit{keys: map[string][]byte{}, version: 1} }

func (f *fakeTransit) DataKey(context.Context) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, "", errors.New("vault is down")
	}
	f.dataKeys++
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	w := "vault:v" + string(rune('0'+f.version)) + ":" + strings.Repeat("x", f.dataKeys)
	f.keys[w] = k
	return k, w, nil
}

func (f *fakeTransit) Unwrap(_ context.Context, w string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unwraps++
	k, ok := f.keys[w]
	if !ok {
		return nil, errors.New("unknown ciphertext")
	}
	return k, nil
}

func (f *fakeTransit) Rewrap(_ context.Context, ws []string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(ws))
	for i, w := range ws {
		nw := "vault:v" + string(rune('0'+f.version)) + w[len("vault:v1"):]
		f.keys[nw] = f.keys[w]
		out[i] = nw
	}
	return out, nil
}

func newKeyring(f *fakeTransit, lifetime time.Duration) (*Keyring, *time.Time) {
	k := New(f, lifetime, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return now }
	return k, &now
}

func TestSealOpen(t *testing.T) {
	f := newFake()
	k, _ := newKeyring(f, time.Hour)
	ctx := context.Background()
	wrapped, sealed, err := k.Seal(ctx, []byte("order-1"), "+1 555 0100", "1 Main St")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sealed {
		if strings.Contains(s, "555") || strings.Contains(s, "Main") {
			t.Fatalf("sealed value shows its plaintext: %q", s)
		}
	}
	tests := []struct {
		name    string
		aad     string
		sealed  []string
		wantErr bool
	}{
		{"same row", "order-1", sealed, false},
		{"moved to another row", "order-2", sealed, true},
		{"tampered", "order-1", []string{sealed[0][:len(sealed[0])-4] + "AAAA"}, true},
		{"not sealed", "order-1", []string{"plain text"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Open(ctx, wrapped, []byte(tt.aad), tt.sealed...)
			if tt.wantErr != (err != nil) {
				t.Fatalf("Open = %v, %v; want error %v", got, err, tt.wantErr)
			}
			if err == nil && (got[0] != "+1 555 0100" || got[1] != "1 Main St") {
				t.Errorf("Open = %q", got)
			}
		})
	}
}

func TestDataKeyLifetime(t *testing.T) {
	f := newFake()
	k, now := newKeyring(f, 10*time.Minute)
	ctx := context.Background()
	w1, _, _ := k.Seal(ctx, nil, "a")
	w2, _, _ := k.Seal(ctx, nil, "b")
	if w1 != w2 || f.dataKeys != 1 {
		t.Fatalf("within its lifetime the data key changed (%q, %q) or transit was asked %d times", w1, w2, f.dataKeys)
	}
	*now = now.Add(11 * time.Minute)
	w3, _, _ := k.Seal(ctx, nil, "c")
	if w3 == w1 || f.dataKeys != 2 {
		t.Fatalf("after its lifetime the data key stayed (%q) or transit was asked %d times", w3, f.dataKeys)
	}

	// Vault away when the key is due: orders keep being sealed with the current key.
	f.down = true
	*now = now.Add(11 * time.Minute)
	w4, _, err := k.Seal(ctx, nil, "d")
	if err != nil || w4 != w3 {
		t.Fatalf("with transit down: %q, %v; want the current key %q", w4, err, w3)
	}
}

func TestSealFailsWithoutAnyKey(t *testing.T) {
	f := newFake()
	f.down = true
	k, _ := newKeyring(f, time.Hour)
	if _, _, err := k.Seal(context.Background(), nil, "x"); err == nil {
		t.Fatal("Seal with no data key and transit down succeeded")
	}
}

func TestOpenUnwrapsOnceAndSurvivesRewrap(t *testing.T) {
	f := newFake()
	writer, _ := newKeyring(f, time.Hour)
	ctx := context.Background()
	wrapped, sealed, err := writer.Seal(ctx, []byte("id"), "secret")
	if err != nil {
		t.Fatal(err)
	}
	reader, _ := newKeyring(f, time.Hour) // another replica: cold cache
	for range 3 {
		if got, err := reader.Open(ctx, wrapped, []byte("id"), sealed...); err != nil || got[0] != "secret" {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	if f.unwraps != 1 {
		t.Errorf("unwraps = %d, want 1 (cached afterwards)", f.unwraps)
	}

	f.version = 2 // the operator rotated the transit key
	rewrapped, err := writer.Rewrap(ctx, []string{wrapped})
	if err != nil || !strings.HasPrefix(rewrapped[0], "vault:v2:") {
		t.Fatalf("Rewrap = %q, %v", rewrapped, err)
	}
	if got, err := reader.Open(ctx, rewrapped[0], []byte("id"), sealed...); err != nil || got[0] != "secret" {
		t.Fatalf("Open after rewrap = %q, %v; values must not need re-encryption", got, err)
	}
}
