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

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
)

// RotateDBCreds revokes every MySQL user Vault gave the order service; it fetches new ones on its next
// connection (a refused login asks for new credentials at once).
func (p *Provisioner) RotateDBCreds(ctx context.Context) error {
	if err := p.write(ctx, "sys/leases/revoke-prefix/database/creds/order", nil); err != nil {
		return err
	}
	p.logger.Info("revoked every database/creds/order lease; their MySQL users are dropped")
	return nil
}

// RotateDBRoot has Vault set a new password for its MySQL admin; nobody ever learns it.
func (p *Provisioner) RotateDBRoot(ctx context.Context) error {
	if err := p.write(ctx, "database/rotate-root/"+p.cfg.DB.Connection, nil); err != nil {
		return err
	}
	p.logger.Info("rotated the password of vault's MySQL admin", "connection", p.cfg.DB.Connection)
	return nil
}

// RotateTransitKey adds a new version of the PII key; `order rewrap-pii` then rewraps stored data keys.
func (p *Provisioner) RotateTransitKey(ctx context.Context) (int, error) {
	if err := p.write(ctx, "transit/keys/"+p.cfg.Transit.Key+"/rotate", nil); err != nil {
		return 0, err
	}
	sec, err := p.read(ctx, "transit/keys/"+p.cfg.Transit.Key)
	if err != nil {
		return 0, err
	}
	v, _ := sec.Data["latest_version"].(json.Number) // vault/api decodes numbers as json.Number
	n, err := v.Int64()
	if err != nil {
		return 0, fmt.Errorf("transit key %s: latest_version %q: %w", p.cfg.Transit.Key, v, err)
	}
	p.logger.Info("transit key rotated", "key", p.cfg.Transit.Key, "latest_version", n)
	return int(n), nil
}

// RevokeServiceLogins revokes every token an AppRole login made: each service logs in again, with the secret_id
// it holds (after a secret_id rotation, the new one).
func (p *Provisioner) RevokeServiceLogins(ctx context.Context) error {
	if err := p.write(ctx, "sys/leases/revoke-prefix/auth/approle/login", nil); err != nil {
		return err
	}
	p.logger.Info("revoked every approle login token; services log in again")
	return nil
}

// RotateConnectCA moves the Connect CA to a new root in a new Vault mount. Consul cross-signs the new root with
// the old one, so sidecars holding old leaves keep talking while they fetch new ones.
func (p *Provisioner) RotateConnectCA(ctx context.Context) (rootID string, err error) {
	err = p.withConsulWriter(ctx, func(c *consul.Client) error {
		cur, _, err := c.Connect().CAGetConfig(p.q(ctx))
		if err != nil {
			return err
		}
		if cur.Provider != "vault" {
			return fmt.Errorf("the connect CA provider is %q, not vault: run meshctl bootstrap first", cur.Provider)
		}
		if want, err := p.caAuthMethod(); err != nil || !caLoginCurrent(cur.Config, want) {
			return fmt.Errorf("the connect CA does not log in with its approle yet (%v): run meshctl bootstrap first", err)
		}
		gen := caGeneration(cur) + 1
		if err := p.setConnectCA(ctx, c, gen); err != nil {
			return err
		}
		roots, _, err := c.Connect().CARoots(p.q(ctx))
		if err != nil {
			return err
		}
		rootID = roots.ActiveRootID
		p.logger.Info("connect CA rotated", "root_mount", fmt.Sprintf("%s%d", rootMountPrefix, gen), "active_root", rootID)
		// Roots two generations back have signed nothing current for a whole rotation: unmount them.
		if gen > 2 {
			path := fmt.Sprintf("%s%d", rootMountPrefix, gen-2)
			cctx, cancel := p.ctx(ctx)
			defer cancel()
			if err := p.vault.Sys().UnmountWithContext(cctx, path); err != nil {
				p.logger.Warn("could not unmount an old connect root", "mount", path, "err", err)
			}
		}
		return nil
	})
	return rootID, err
}

// staffName is a staff member's name as the gateway shows it: lower case, short.
var staffName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// StaffToken issues a staff bearer token for name and returns it; Vault keeps only its SHA-256, which the gateway
// reads. Issuing again for name replaces (revokes) the previous token.
func (p *Provisioner) StaffToken(ctx context.Context, name string) (string, error) {
	if !staffName.MatchString(name) {
		return "", errors.New("a staff name is lower-case letters, digits, - and _, starting with a letter")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	kv := p.vault.KVv2("secret")
	c, cancel := p.ctx(ctx)
	defer cancel()
	data := map[string]any{name: hex.EncodeToString(sum[:])}
	_, err := kv.Patch(c, "pizza/staff-tokens", data)
	if errors.Is(err, vault.ErrSecretNotFound) {
		_, err = kv.Put(c, "pizza/staff-tokens", data)
	}
	if err != nil {
		return "", fmt.Errorf("store the staff token's hash: %w", err)
	}
	p.logger.Info("staff token issued; vault keeps only its hash", "staff", name)
	return token, nil
}

// ConsulToken leases a Consul token on one of Vault's roles for a person: "ui-read" to log in to the UI,
// "operator" for the consul CLI. It lives for the role's TTL.
func (p *Provisioner) ConsulToken(ctx context.Context, role string) (token string, ttlSeconds int, err error) {
	if role != "ui-read" && role != "operator" {
		return "", 0, fmt.Errorf("no consul token role %q for people (want ui-read or operator)", role)
	}
	sec, err := p.read(ctx, "consul/creds/"+role)
	if err != nil {
		return "", 0, err
	}
	if sec == nil {
		return "", 0, fmt.Errorf("vault has no consul role %q", role)
	}
	token, _ = sec.Data["token"].(string)
	return token, sec.LeaseDuration, nil
}
