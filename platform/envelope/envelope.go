// Package envelope encrypts small values (customer PII) with data keys that Vault's transit engine issues and
// wraps, so that the hot path makes no call to Vault.
//
// A data key is asked for once (transit/datakey/plaintext/<key>) and used for many values until it is older
// than its lifetime; values are sealed locally with AES-256-GCM. The wrapped form of the data key is stored
// next to the values. Opening needs the plaintext data key: it is kept in memory by its wrapped form and
// unwrapped by transit/decrypt on a miss. Rotating the transit key needs no re-encryption of values: Rewrap
// re-encrypts the few wrapped data keys to the newest key version (transit/rewrap).
package envelope

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/pizzajoint/mesh/platform/tracing"
	"log/slog"
	"sync"
	"time"
)

// Transit is the part of Vault's transit engine the keyring uses. VaultTransit implements it.
type Transit interface {
	// DataKey returns a new 256-bit key in plaintext and wrapped by the transit key.
	DataKey(ctx context.Context) (plaintext []byte, wrapped string, err error)
	// Unwrap decrypts a wrapped data key.
	Unwrap(ctx context.Context, wrapped string) ([]byte, error)
	// Rewrap re-encrypts wrapped data keys to the newest version of the transit key, in order.
	Rewrap(ctx context.Context, wrapped []string) ([]string, error)
}

// Keyring seals and opens values with transit data keys.
type Keyring struct {
	transit  Transit
	lifetime time.Duration
	logger   *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	current *dataKey
	opened  map[string]cipher.AEAD // by wrapped form; a handful of entries per lifetime
}

type dataKey struct {
	wrapped string
	aead    cipher.AEAD
	created time.Time
}

// MaxCached bounds the unwrapped data keys kept in memory.
const MaxCached = 1024

// New returns a Keyring that replaces its data key every lifetime.
func New(t Transit, lifetime time.Duration, logger *slog.Logger) *Keyring {
	return &Keyring{transit: t, lifetime: lifetime, logger: logger.With("component", "envelope"), now: time.Now,
		opened: map[string]cipher.AEAD{}}
}

// Seal encrypts each value with the current data key, binding it to aad (e.g. the row's ID), and returns the
// wrapped data key to store alongside.
func (k *Keyring) Seal(ctx context.Context, aad []byte, values ...string) (wrapped string, sealed []string, err error) {
	dk, err := k.currentKey(ctx)
	if err != nil {
		return "", nil, err
	}
	sealed = make([]string, len(values))
	for i, v := range values {
		nonce := make([]byte, dk.aead.NonceSize(), dk.aead.NonceSize()+len(v)+dk.aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return "", nil, err
		}
		sealed[i] = base64.StdEncoding.EncodeToString(dk.aead.Seal(nonce, nonce, []byte(v), aad))
	}
	return dk.wrapped, sealed, nil
}

// Open decrypts values sealed under the wrapped data key with aad.
func (k *Keyring) Open(ctx context.Context, wrapped string, aad []byte, sealed ...string) ([]string, error) {
	aead, err := k.keyFor(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(sealed))
	for i, s := range sealed {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) < aead.NonceSize() {
			return nil, errors.New("envelope: value is not sealed")
		}
		plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad)
		if err != nil {
			return nil, errors.New("envelope: value does not open with its key (tampered, or moved to another row)")
		}
		out[i] = string(plain)
	}
	return out, nil
}

// Rewrap re-encrypts wrapped data keys to the transit key's newest version. Their plaintext does not change,
// so values sealed under them need no change; callers replace each wrapped form with its new one.
func (k *Keyring) Rewrap(ctx context.Context, wrapped []string) ([]string, error) {
	if len(wrapped) == 0 {
		return nil, nil
	}
	return k.transit.Rewrap(ctx, wrapped)
}

// currentKey returns the data key to seal with, asking transit for a new one when it is older than its
// lifetime. If transit cannot answer, the old key stays in use: its lifetime limits how much one key
// protects, and running out of it must not stop orders while Vault is away.
func (k *Keyring) currentKey(ctx context.Context) (*dataKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.current != nil && k.now().Sub(k.current.created) < k.lifetime {
		return k.current, nil
	}
	sctx, span := tracing.Span(ctx, "vault transit data key")
	plain, wrapped, err := k.transit.DataKey(sctx)
	tracing.End(span, err)
	if err != nil {
		if k.current != nil {
			k.logger.Warn("cannot get a new data key; sealing with the current one", "err", err)
			k.current.created = k.now().Add(-k.lifetime + time.Minute) // ask again in a minute
			return k.current, nil
		}
		return nil, fmt.Errorf("new data key: %w", err)
	}
	aead, err := newAEAD(plain)
	if err != nil {
		return nil, err
	}
	k.current = &dataKey{wrapped: wrapped, aead: aead, created: k.now()}
	k.remember(wrapped, aead)
	k.logger.Info("new data key for PII")
	return k.current, nil
}

func (k *Keyring) keyFor(ctx context.Context, wrapped string) (cipher.AEAD, error) {
	k.mu.Lock()
	aead, ok := k.opened[wrapped]
	k.mu.Unlock()
	if ok {
		return aead, nil
	}
	plain, err := k.transit.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	if aead, err = newAEAD(plain); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.remember(wrapped, aead)
	k.mu.Unlock()
	return aead, nil
}

// remember caches an unwrapped key; past MaxCached it forgets everything but the current key (simple, and
// misses only cost one transit call each).
func (k *Keyring) remember(wrapped string, aead cipher.AEAD) {
	if len(k.opened) >= MaxCached {
		k.opened = map[string]cipher.AEAD{}
		if k.current != nil {
			k.opened[k.current.wrapped] = k.current.aead
		}
	}
	k.opened[wrapped] = aead
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("data key has %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
