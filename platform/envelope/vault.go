package envelope

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// VaultTransit is Transit on a Vault client whose token may read data keys, decrypt and rewrap with Key.
type VaultTransit struct {
	Client  *vault.Client
	Mount   string // usually "transit"
	Key     string // e.g. "orders-pii"
	Timeout time.Duration
	// OnForbidden, if set, is told when Vault refuses the client's token (so its owner logs in again).
	OnForbidden func(error)
}

var _ Transit = VaultTransit{}

func (v VaultTransit) write(ctx context.Context, op string, data map[string]any) (*vault.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	path := fmt.Sprintf("%s/%s/%s", v.Mount, op, v.Key)
	s, err := v.Client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		v.forbidden(err)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("%s: empty answer", path)
	}
	return s, nil
}

func (v VaultTransit) forbidden(err error) {
	var re *vault.ResponseError
	if v.OnForbidden != nil && errors.As(err, &re) && re.StatusCode == 403 {
		v.OnForbidden(err)
	}
}

// DataKey asks transit for a new plaintext data key and its wrapped form.
func (v VaultTransit) DataKey(ctx context.Context) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	path := fmt.Sprintf("%s/datakey/plaintext/%s", v.Mount, v.Key)
	s, err := v.Client.Logical().WriteWithContext(ctx, path, map[string]any{"bits": 256})
	if err != nil {
		v.forbidden(err)
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	if s == nil {
		return nil, "", fmt.Errorf("%s: empty answer", path)
	}
	plain, _ := s.Data["plaintext"].(string)
	wrapped, _ := s.Data["ciphertext"].(string)
	key, err := base64.StdEncoding.DecodeString(plain)
	if err != nil || wrapped == "" {
		return nil, "", fmt.Errorf("%s: malformed answer", path)
	}
	return key, wrapped, nil
}

// Unwrap decrypts a wrapped data key.
func (v VaultTransit) Unwrap(ctx context.Context, wrapped string) ([]byte, error) {
	s, err := v.write(ctx, "decrypt", map[string]any{"ciphertext": wrapped})
	if err != nil {
		return nil, err
	}
	plain, _ := s.Data["plaintext"].(string)
	return base64.StdEncoding.DecodeString(plain)
}

// Rewrap re-encrypts wrapped keys to the newest key version in one batch call.
func (v VaultTransit) Rewrap(ctx context.Context, wrapped []string) ([]string, error) {
	batch := make([]map[string]any, len(wrapped))
	for i, w := range wrapped {
		batch[i] = map[string]any{"ciphertext": w}
	}
	s, err := v.write(ctx, "rewrap", map[string]any{"batch_input": batch})
	if err != nil {
		return nil, err
	}
	results, _ := s.Data["batch_results"].([]any)
	if len(results) != len(wrapped) {
		return nil, errors.New("rewrap: answer does not match the request")
	}
	out := make([]string, len(results))
	for i, r := range results {
		m, _ := r.(map[string]any)
		if e, _ := m["error"].(string); e != "" {
			return nil, fmt.Errorf("rewrap item %d: %s", i, e)
		}
		if out[i], _ = m["ciphertext"].(string); out[i] == "" {
			return nil, fmt.Errorf("rewrap item %d: no ciphertext", i)
		}
	}
	return out, nil
}
