// Package vaultkv reads secrets from Vault's KV version 2 engine with a vaultauth.Session's token. When Vault
// refuses the token (an operator revoked it, a rotation) it reports that to the session and reads once more
// after the new login, so a reader never waits for the token's next renewal to notice.
package vaultkv

import (
	"context"
	"fmt"
	"time"

	"github.com/pizzajoint/mesh/platform/vaultauth"
)

// Reader reads KV v2 secrets as the session's service.
type Reader struct {
	session *vaultauth.Session
	// Timeout bounds a whole Read: waiting for a login, the read, and a re-login and second read after a refusal.
	timeout time.Duration
}

// New returns a Reader on session; each Read takes at most the session's timeout.
func New(session *vaultauth.Session) *Reader {
	return &Reader{session: session, timeout: session.Timeout()}
}

// Read returns the values of the secret at path, the API path of a KV v2 secret ("secret/data/pizza/x"); nil
// (and no error) when there is no such secret.
func (r *Reader) Read(ctx context.Context, path string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	login, err := r.session.Await(ctx) // at start-up the login may still be under way
	if err != nil {
		return nil, err
	}
	secret, err := login.Client().Logical().ReadWithContext(ctx, path)
	if vaultauth.IsForbidden(err) {
		if login, err = r.session.Relogin(ctx, login); err != nil {
			return nil, fmt.Errorf("read %s: vault refused the token, and %w", path, err)
		}
		secret, err = login.Client().Logical().ReadWithContext(ctx, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if secret == nil {
		return nil, nil
	}
	data, _ := secret.Data["data"].(map[string]any) // KV v2 nests the values; a deleted version has none
	return data, nil
}

// Strings returns the string values of the secret at path (see Read); an empty map when there is no such
// secret.
func (r *Reader) Strings(ctx context.Context, path string) (map[string]string, error) {
	data, err := r.Read(ctx, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(data))
	for k, v := range data {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, nil
}
