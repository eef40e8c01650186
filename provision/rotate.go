package provision

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	vault "github.com/hashicorp/vault/api"
)

// Rotations carries out the runbook's rotations and issues the tokens people use, all on Vault: database
// credentials and Vault's database admin password, the transit key, the services' logins, staff bearer tokens
// and Consul tokens leased for people.
type Rotations struct {
	s *Session
}

// NewRotations returns the runbook's rotations on s.
func NewRotations(s *Session) *Rotations {
	return &Rotations{s: s}
}

// RotateDBCreds revokes every MySQL user Vault gave the order service; it fetches new ones on its next
// connection (a refused login asks for new credentials at once).
func (r *Rotations) RotateDBCreds(ctx context.Context) error {
	if err := r.s.write(ctx, "sys/leases/revoke-prefix/database/creds/order", nil); err != nil {
		return err
	}
	r.s.logger.Info("revoked every database/creds/order lease; their MySQL users are dropped")
	return nil
}

// RotateDBRoot has Vault set a new password for its MySQL admin; nobody ever learns it.
func (r *Rotations) RotateDBRoot(ctx context.Context) error {
	if err := r.s.write(ctx, "database/rotate-root/"+r.s.cfg.DB.Connection, nil); err != nil {
		return err
	}
	r.s.logger.Info("rotated the password of vault's MySQL admin", "connection", r.s.cfg.DB.Connection)
	return nil
}

// RotateTransitKey adds a new version of the PII key; `order rewrap-pii` then rewraps stored data keys.
func (r *Rotations) RotateTransitKey(ctx context.Context) (int, error) {
	if err := r.s.write(ctx, "transit/keys/"+r.s.cfg.Transit.Key+"/rotate", nil); err != nil {
		return 0, err
	}
	sec, err := r.s.read(ctx, "transit/keys/"+r.s.cfg.Transit.Key)
	if err != nil {
		return 0, err
	}
	v, _ := sec.Data["latest_version"].(json.Number) // vault/api decodes numbers as json.Number
	n, err := v.Int64()
	if err != nil {
		return 0, fmt.Errorf("transit key %s: latest_version %q: %w", r.s.cfg.Transit.Key, v, err)
	}
	r.s.logger.Info("transit key rotated", "key", r.s.cfg.Transit.Key, "latest_version", n)
	return int(n), nil
}

// RevokeServiceLogins revokes every token an AppRole login made: each service logs in again, with the secret_id
// it holds (after a secret_id rotation, the new one).
func (r *Rotations) RevokeServiceLogins(ctx context.Context) error {
	if err := r.s.write(ctx, "sys/leases/revoke-prefix/auth/approle/login", nil); err != nil {
		return err
	}
	r.s.logger.Info("revoked every approle login token; services log in again")
	return nil
}

// staffName is a staff member's name as the gateway shows it: lower case, short.
var staffName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// StaffToken issues a staff bearer token for name and returns it; Vault keeps only its SHA-256, which the gateway
// reads. Issuing again for name replaces (revokes) the previous token.
func (r *Rotations) StaffToken(ctx context.Context, name string) (string, error) {
	if !staffName.MatchString(name) {
		return "", errors.New("a staff name is lower-case letters, digits, - and _, starting with a letter")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	kv := r.s.vault.KVv2("secret")
	c, cancel := r.s.ctx(ctx)
	defer cancel()
	data := map[string]any{name: hex.EncodeToString(sum[:])}
	_, err := kv.Patch(c, "pizza/staff-tokens", data)
	if errors.Is(err, vault.ErrSecretNotFound) {
		_, err = kv.Put(c, "pizza/staff-tokens", data)
	}
	if err != nil {
		return "", fmt.Errorf("store the staff token's hash: %w", err)
	}
	r.s.logger.Info("staff token issued; vault keeps only its hash", "staff", name)
	return token, nil
}

// ConsulToken leases a Consul token on one of Vault's roles for a person: "ui-read" to log in to the UI,
// "operator" for the consul CLI. It lives for the role's TTL.
func (r *Rotations) ConsulToken(ctx context.Context, role string) (token string, ttlSeconds int, err error) {
	if role != "ui-read" && role != "operator" {
		return "", 0, fmt.Errorf("no consul token role %q for people (want ui-read or operator)", role)
	}
	sec, err := r.s.read(ctx, "consul/creds/"+role)
	if err != nil {
		return "", 0, err
	}
	if sec == nil {
		return "", 0, fmt.Errorf("vault has no consul role %q", role)
	}
	token, _ = sec.Data["token"].(string)
	return token, sec.LeaseDuration, nil
}
