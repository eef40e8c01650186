package vaultauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// appRole logs in with a role_id and a secret_id read from their files at each login, so delivering a new
// secret_id needs no restart. A wrapped secret_id is checked and unwrapped once per delivery.
type appRole struct {
	roleIDFile, secretIDFile string
	wrapped                  bool
	role                     string // the AppRole a wrapped secret_id must come from ("": any)
	client                   *vault.Client
	timeout                  time.Duration
	logger                   *slog.Logger

	// The file watcher and the login share the unwrapped secret_id with the wrapping token it came from.
	mu                    sync.Mutex
	wrappedFrom, secretID string
}

func (a *appRole) name() string { return MethodAppRole }

func (a *appRole) login(ctx context.Context, c *vault.Client) (*vault.Secret, error) {
	roleID, err := readTrimmed(a.roleIDFile)
	if err != nil {
		return nil, fmt.Errorf("role_id: %w", err)
	}
	secretID, err := readTrimmed(a.secretIDFile)
	if err != nil {
		return nil, fmt.Errorf("secret_id: %w", err)
	}
	if a.wrapped {
		if secretID, err = a.unwrap(ctx, secretID); err != nil {
			return nil, err
		}
	}
	auth, err := c.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		return nil, fmt.Errorf("approle login: %w", err)
	}
	return auth, nil
}

// watch unwraps a newly delivered secret_id as soon as its file changes, not at the next login (which may be
// hours away, long after the wrapping token expired). Only a wrapped secret_id needs it.
func (a *appRole) watch(ctx context.Context) {
	if !a.wrapped {
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := readTrimmed(a.secretIDFile)
		if err != nil {
			continue // being replaced, or gone: the next login says so
		}
		a.mu.Lock()
		seen := v == a.wrappedFrom
		a.mu.Unlock()
		if seen {
			continue
		}
		uctx, cancel := context.WithTimeout(ctx, a.timeout)
		_, err = a.unwrap(uctx, v)
		cancel()
		if err != nil {
			a.logger.Error("could not unwrap the newly delivered secret_id", "err", err)
			continue
		}
		a.logger.Info("new secret_id delivered and unwrapped; used at the next login")
	}
}

// unwrap unwraps the wrapping token v once, after checking that Vault made it for an AppRole secret_id (of the
// configured role): a token wrapping anything else, or one someone else unwrapped first, is refused.
func (a *appRole) unwrap(ctx context.Context, v string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if v == a.wrappedFrom && a.secretID != "" {
		return a.secretID, nil
	}
	uc, err := a.client.Clone() // Unwrap puts the wrapping token on the client it runs on
	if err != nil {
		return "", err
	}
	uc.ClearToken()
	info, err := uc.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": v})
	if err != nil {
		return "", fmt.Errorf("look up the secret_id's wrapping token (expired, or already unwrapped by someone else: "+
			"treat the delivery as compromised): %w", err)
	}
	path, _ := info.Data["creation_path"].(string)
	if !wrappedSecretIDPath(path, a.role) {
		return "", fmt.Errorf("the secret_id file holds a wrapping token from %q, not an AppRole secret_id of role %q", path, a.role)
	}
	unwrapped, err := uc.Logical().UnwrapWithContext(ctx, v)
	if err != nil {
		return "", fmt.Errorf("unwrap secret_id: %w", err)
	}
	if unwrapped == nil {
		return "", errors.New("unwrapped secret is empty")
	}
	id, _ := unwrapped.Data["secret_id"].(string)
	if id == "" {
		return "", errors.New("unwrapped secret has no secret_id")
	}
	a.wrappedFrom, a.secretID = v, id
	return id, nil
}

// wrappedSecretIDPath says whether a wrapping token's creation path is auth/approle/role/<role>/secret-id (any
// role when role is empty).
func wrappedSecretIDPath(path, role string) bool {
	rest, ok := strings.CutPrefix(path, "auth/approle/role/")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, "/secret-id")
	return ok && name != "" && !strings.Contains(name, "/") && (role == "" || name == role)
}

// readTrimmed reads a one-line secret file.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}
