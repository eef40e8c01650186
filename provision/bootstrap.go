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
// kept only until the first bootstrap ends) and unseals it: every node of a cluster, the ones that join it after
// its initialisation too. It reports whether it holds the root token of a fresh initialisation.
func (vs *VaultSetup) OpenVault(ctx context.Context) (fresh bool, err error) {
	nodes, err := vs.s.vaultNodes()
	if err != nil {
		return false, err
	}
	first, inited, err := vs.initStatus(ctx, nodes)
	if err != nil {
		return false, err
	}
	if !inited {
		c, cancel := vs.s.ctx(ctx)
		defer cancel()
		resp, err := first.Sys().InitWithContext(c, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return false, fmt.Errorf("vault init (%s): %w", first.Address(), err)
		}
		if err := writeSecretFile(vs.s.unsealKeyFile(), resp.KeysB64[0]); err != nil {
			return false, err
		}
		if err := writeSecretFile(vs.s.pendingRootFile(), resp.RootToken); err != nil {
			return false, err
		}
		vs.s.logger.Info("vault initialised; unseal key written", "node", first.Address(), "file", vs.s.unsealKeyFile())
	}
	if root, err := readSecretFile(vs.s.pendingRootFile()); err == nil {
		vs.s.vault.SetToken(root)
		vs.s.root = true
		vs.s.logger.Warn("first bootstrap: using the root token until the operator token replaces it")
	}
	// Nodes that join a cluster take its key only once the node they join from is unsealed, a few seconds later.
	if err := waitFor(ctx, "every vault node unsealed", func() error { return vs.Unseal(ctx) }); err != nil {
		return false, err
	}
	if err := vs.s.useActiveNode(ctx); err != nil {
		return false, err
	}
	return vs.s.root, nil
}

// initStatus asks the nodes whether Vault is initialised: yes if any node says so. It returns the first node that
// answered, where a new cluster is initialised.
func (vs *VaultSetup) initStatus(ctx context.Context, nodes []*vault.Client) (first *vault.Client, inited bool, err error) {
	var errs []error
	for _, n := range nodes {
		c, cancel := vs.s.ctx(ctx)
		ok, err := n.Sys().InitStatusWithContext(c)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("vault init status (%s): %w", n.Address(), err))
			continue
		}
		if first == nil {
			first = n
		}
		inited = inited || ok
	}
	if first == nil {
		return nil, false, errors.Join(errs...)
	}
	return first, inited, nil
}

// Unseal unseals every sealed Vault node with the key from the state folder, then waits until one is active.
func (vs *VaultSetup) Unseal(ctx context.Context) error {
	nodes, err := vs.s.vaultNodes()
	if err != nil {
		return err
	}
	var errs []error
	unsealed := false
	for _, n := range nodes {
		did, err := vs.unsealNode(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Address(), err))
		}
		unsealed = unsealed || did
	}
	if err := errors.Join(errs...); err != nil || !unsealed {
		return err
	}
	return waitFor(ctx, "vault active", func() error {
		for _, n := range nodes {
			if h, err := n.Sys().HealthWithContext(ctx); err == nil && h.Initialized && !h.Sealed && !h.Standby {
				return nil
			}
		}
		return errors.New("no node active yet")
	})
}

// unsealNode unseals one node if it is sealed, and says whether it did.
func (vs *VaultSetup) unsealNode(ctx context.Context, n *vault.Client) (bool, error) {
	c, cancel := vs.s.ctx(ctx)
	defer cancel()
	st, err := n.Sys().SealStatusWithContext(c)
	if err != nil {
		return false, fmt.Errorf("vault seal status: %w", err)
	}
	if !st.Sealed {
		return false, nil
	}
	key, err := readSecretFile(vs.s.unsealKeyFile())
	if err != nil {
		return false, fmt.Errorf("vault is sealed and its unseal key is missing: %w", err)
	}
	st, err = n.Sys().UnsealWithContext(c, key)
	if err != nil {
		return false, fmt.Errorf("vault unseal: %w", err)
	}
	if st.Sealed {
		return false, errors.New("vault unseal: still sealed (a node that has not joined its cluster yet)")
	}
	vs.s.logger.Info("vault unsealed", "node", n.Address())
	return true, nil
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
		{"database replica", vs.replication},
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
