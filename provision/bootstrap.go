package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
)

// VaultSetup brings the control plane up and keeps it configured: it initialises and unseals Vault, runs the
// idempotent bootstrap (Vault's policies, mounts, AppRoles, database and transit key, then Consul's ACLs and
// Connect CA through their units) and hands the first root token over to the operator token (or replaces that
// token, the break-glass path).
type VaultSetup struct {
	s   *Session
	acl *ConsulACL
	ca  *ConnectCA
}

// NewVaultSetup returns the bootstrap of the control plane on s; acl and ca carry out its Consul steps.
func NewVaultSetup(s *Session, acl *ConsulACL, ca *ConnectCA) *VaultSetup {
	return &VaultSetup{s: s, acl: acl, ca: ca}
}

// OpenVault initialises Vault on its first start (one unseal key share, written to a 0600 file; the root token
// kept only until the first bootstrap ends) and unseals it. It reports whether it holds the root token of a
// fresh initialisation.
func (vs *VaultSetup) OpenVault(ctx context.Context) (fresh bool, err error) {
	c, cancel := vs.s.ctx(ctx)
	defer cancel()
	inited, err := vs.s.vault.Sys().InitStatusWithContext(c)
	if err != nil {
		return false, fmt.Errorf("vault init status: %w", err)
	}
	if !inited {
		resp, err := vs.s.vault.Sys().InitWithContext(c, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return false, fmt.Errorf("vault init: %w", err)
		}
		if err := writeSecretFile(vs.s.unsealKeyFile(), resp.KeysB64[0]); err != nil {
			return false, err
		}
		if err := writeSecretFile(vs.s.pendingRootFile(), resp.RootToken); err != nil {
			return false, err
		}
		vs.s.logger.Info("vault initialised; unseal key written", "file", vs.s.unsealKeyFile())
	}
	if root, err := readSecretFile(vs.s.pendingRootFile()); err == nil {
		vs.s.vault.SetToken(root)
		vs.s.root = true
		vs.s.logger.Warn("first bootstrap: using the root token until the operator token replaces it")
	}
	if err := vs.Unseal(ctx); err != nil {
		return false, err
	}
	return vs.s.root, nil
}

// Unseal unseals Vault with the key from the state folder, if it is sealed.
func (vs *VaultSetup) Unseal(ctx context.Context) error {
	c, cancel := vs.s.ctx(ctx)
	defer cancel()
	st, err := vs.s.vault.Sys().SealStatusWithContext(c)
	if err != nil {
		return fmt.Errorf("vault seal status: %w", err)
	}
	if !st.Sealed {
		return nil
	}
	key, err := readSecretFile(vs.s.unsealKeyFile())
	if err != nil {
		return fmt.Errorf("vault is sealed and its unseal key is missing: %w", err)
	}
	if _, err := vs.s.vault.Sys().UnsealWithContext(c, key); err != nil {
		return fmt.Errorf("vault unseal: %w", err)
	}
	vs.s.logger.Info("vault unsealed")
	return waitFor(ctx, "vault active", func() error {
		h, err := vs.s.vault.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if h.Sealed || h.Standby {
			return errors.New("not active yet")
		}
		return nil
	})
}

// KeepUnsealed unseals Vault whenever it is found sealed, checking every interval until ctx ends: a Vault
// server that restarts comes back sealed. Errors (Vault away, restarting) are logged once per run of them.
func (vs *VaultSetup) KeepUnsealed(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		err := vs.Unseal(ctx)
		switch {
		case err != nil && !failing:
			vs.s.logger.Warn("vault could not be checked or unsealed; retrying", "err", err, "every", interval)
			failing = true
		case err == nil && failing:
			vs.s.logger.Info("vault answers and is unsealed")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Bootstrap applies the whole control-plane configuration. It is idempotent: every start of the stack runs it.
// With a fresh root token it ends by creating the operator token and revoking the root token.
func (vs *VaultSetup) Bootstrap(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"policies", vs.writePolicies},
		{"mounts", vs.enableMounts},
		{"approle roles", vs.approleRoles},
		{"connect CA login", vs.ca.connectCALogin},
		{"database", vs.database},
		{"transit", vs.transitKey},
		{"consul ACL system", vs.acl.consulAccess},
		{"consul", vs.consulSetup},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("bootstrap %s: %w", s.name, err)
		}
	}
	if vs.s.root {
		if err := vs.handOver(ctx); err != nil {
			return fmt.Errorf("bootstrap operator token: %w", err)
		}
	}
	vs.s.logger.Info("bootstrap done")
	return nil
}

// handOver creates the operator's periodic token, writes it to its 0600 file and revokes the root token.
func (vs *VaultSetup) handOver(ctx context.Context) error {
	c, cancel := vs.s.ctx(ctx)
	defer cancel()
	sec, err := vs.s.vault.Auth().Token().CreateOrphanWithContext(c, &vault.TokenCreateRequest{
		Policies: []string{"operator"}, NoDefaultPolicy: true, Period: "720h",
		DisplayName: "operator", Metadata: map[string]string{"created_by": "meshctl bootstrap"},
	})
	if err != nil {
		return err
	}
	if err := writeSecretFile(vs.s.operatorTokenFile(), sec.Auth.ClientToken); err != nil {
		return err
	}
	if err := vs.s.vault.Auth().Token().RevokeSelfWithContext(c, ""); err != nil {
		return fmt.Errorf("revoke the root token: %w", err)
	}
	if err := os.Remove(vs.s.pendingRootFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	vs.s.vault.SetToken(sec.Auth.ClientToken)
	vs.s.root = false
	vs.s.logger.Info("root token revoked; operator token written", "file", vs.s.operatorTokenFile())
	return nil
}

// ReplaceOperatorToken is the break-glass path: with a root token made by `vault operator generate-root`, it
// writes a new operator token and revokes the root token.
func (vs *VaultSetup) ReplaceOperatorToken(ctx context.Context, rootToken string) error {
	vs.s.UseToken(rootToken, true)
	// The operator policy may have changed with the repository: write it before minting a token with it.
	if err := vs.writePolicies(ctx); err != nil {
		return err
	}
	// A stack from before the Connect CA's AppRole gets it here; its next bootstrap moves the CA onto it.
	if err := vs.ca.connectCALoginRole(ctx); err != nil {
		return err
	}
	return vs.handOver(ctx)
}

// consulSetup runs on every bootstrap with a provisioner token leased for the run: policies, the agent's token,
// intentions, and Vault as the Connect CA.
func (vs *VaultSetup) consulSetup(ctx context.Context) error {
	return vs.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		for _, step := range []func(context.Context, *consul.Client) error{
			vs.acl.upsertConsulPolicies, vs.acl.agentToken, vs.acl.applyIntentions, vs.ca.connectCA,
		} {
			if err := step(ctx, c); err != nil {
				return err
			}
		}
		return nil
	})
}
