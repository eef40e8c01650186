// Package provision sets up and operates the control plane of Pizza Joint mesh on vault/api and consul/api: it
// initialises and unseals Vault, bootstraps Consul's ACL system through Vault's Consul secrets engine, writes
// policies, roles and intentions, makes Vault's PKI the Connect CA, delivers each service instance its
// credentials, and carries out the runbook's rotations. cmd/meshctl wires it; the local stack, Compose and
// Kubernetes all run that one program.
//
// Who holds what:
//   - Vault's root token exists only in memory during the first bootstrap and is revoked at its end.
//   - Later provisioning (bootstrap, Kubernetes auth, Connect CA rotation) generates a root token from the unseal
//     key for its run, trades it for a 15-minute one and revokes both (admin.go); none is written anywhere.
//   - The operator holds a periodic token with the exact policy vault/policies/operator.hcl: the runbook only.
//   - Vault holds Consul's management token (it bootstrapped the ACL system); meshctl leases a provisioner token
//     for minutes per run and revokes it when the run ends.
//   - Each service instance holds a role_id, a response-wrapped secret_id and a Consul token with its service's
//     identity, in a folder only its OS user can read. On Kubernetes a pod holds only its service-account token,
//     which Vault's Kubernetes auth method trusts (vault/kubernetes).
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
)

// Config is where the control plane is and how it is shaped. Every field has a MESHCTL_* variable (cmd/meshctl).
type Config struct {
	Vault struct {
		Addr   string `conf:"default:https://127.0.0.1:8200"`
		CACert string `conf:"default:certs/ca.pem,help:CA that signed the listener certificates of Vault and Consul"`
		// StateDir holds the unseal key and the operator token (0600 files).
		StateDir string `conf:"default:.state/vault"`
		// UnsealKeyFile puts the unseal key elsewhere than StateDir (empty: StateDir/unseal-key), so that an
		// unsealer can be given the key without the operator token (Compose's vault-unsealer).
		UnsealKeyFile string `conf:"help:the unseal key's file (default: unseal-key in the state folder)"`
		// AuditLog is the file audit device's path (secrets in it are HMAC'd).
		AuditLog string `conf:"default:.state/logs/vault-audit.log"`
	}
	Consul struct {
		Addr string `conf:"default:http://127.0.0.1:8500"`
		// Node is the agent's node name; its token has that node's identity.
		Node       string `conf:"default:pizza-1"`
		Datacenter string `conf:"default:dc1"`
	}
	// Repo is the checkout: vault/policies, consul/policies and consul/intentions-*.hcl are read from it.
	Repo string `conf:"default:."`
	DB   struct {
		Addr       string `conf:"default:127.0.0.1:13306"`
		Socket     string `conf:"help:MariaDB unix socket on which root may log in (bootstrap creates Vault's admin user)"`
		Name       string `conf:"default:pizza"`
		Connection string `conf:"default:pizza"`
		AdminUser  string `conf:"default:vault_admin"`
		AdminHost  string `conf:"default:127.0.0.1"`
		CredsTTL   string `conf:"default:1h"`
		CredsMax   string `conf:"default:24h"`
		MigrateTTL string `conf:"default:5m"`
		MigrateMax string `conf:"default:15m"`
	}
	Approle struct {
		// TokenPeriod makes service tokens periodic: renewed forever while the service runs, so it needs its
		// secret_id again only after a revocation or a Vault outage longer than the period.
		TokenPeriod string `conf:"default:20m"`
		// SecretTTL and SecretUses bound a delivered secret_id: hours, and a handful of logins.
		SecretTTL  string `conf:"default:24h"`
		SecretUses int    `conf:"default:10"`
		// WrapTTL is how long a delivered, wrapped secret_id may wait to be unwrapped.
		WrapTTL string `conf:"default:10m"`
		// Wrap delivers secret_ids response-wrapped. Compose turns it off: a container that its restart policy
		// brings back must log in again from the same file, and a wrapping token unwraps only once.
		Wrap bool `conf:"default:true"`
		// Cidrs bind logins and tokens to where the services run; "local-networks" means the networks of this
		// host's (container's) own interfaces, for Compose, whose subnet Docker picks.
		Cidrs string `conf:"default:127.0.0.1/32"`
	}
	Transit struct {
		Key string `conf:"default:orders-pii"`
	}
	ConnectCA ConnectCAConfig
	// Kubernetes is the cluster that `meshctl kubernetes-auth` points Vault's Kubernetes auth method at.
	Kubernetes KubernetesConfig
	// Timeout bounds every call to Vault and Consul.
	Timeout time.Duration `conf:"default:15s"`
}

// Provisioner operates the control plane with one Vault client and one Consul client.
type Provisioner struct {
	cfg    Config
	vault  *vault.Client
	consul *consul.Client
	logger *slog.Logger
	// root is true while the Vault client holds the root token of a first bootstrap.
	root bool
	// admin is true while it holds this run's provisioning token (BeginProvisioning): root policy, minutes.
	admin bool
	// caLoginReady: this run delivered the Connect CA's AppRole login (connectCALogin).
	caLoginReady bool
}

// New returns a Provisioner for cfg. It does not call Vault or Consul.
func New(cfg Config, logger *slog.Logger) (*Provisioner, error) {
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	vc.Address = cfg.Vault.Addr
	vc.Timeout = cfg.Timeout
	if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.Vault.CACert}); err != nil {
		return nil, fmt.Errorf("vault TLS: %w", err)
	}
	vclient, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	vclient.ClearToken() // a token is chosen by Authenticate, never picked up from the environment
	cc := consul.DefaultConfig()
	cc.Address = cfg.Consul.Addr
	cc.Token = ""
	cc.TokenFile = ""
	cc.TLSConfig.CAFile = cfg.Vault.CACert
	cclient, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Provisioner{cfg: cfg, vault: vclient, consul: cclient, logger: logger}, nil
}

func (p *Provisioner) unsealKeyFile() string {
	if p.cfg.Vault.UnsealKeyFile != "" {
		return p.cfg.Vault.UnsealKeyFile
	}
	return filepath.Join(p.cfg.Vault.StateDir, "unseal-key")
}

// pendingRootFile holds the root token only while a first bootstrap has not finished (so a failed first run can
// be run again); the hand-over to the operator token deletes it with the token's revocation.
func (p *Provisioner) pendingRootFile() string {
	return filepath.Join(p.cfg.Vault.StateDir, "root-token.bootstrap-pending")
}

func (p *Provisioner) operatorTokenFile() string {
	return filepath.Join(p.cfg.Vault.StateDir, "operator-token")
}
func (p *Provisioner) agentAccessorFile() string {
	return filepath.Join(p.cfg.Vault.StateDir, "consul-agent-token.accessor")
}

// ctx bounds one call.
func (p *Provisioner) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, p.cfg.Timeout)
}

// OpenVault initialises Vault on its first start (one unseal key share, written to a 0600 file; the root token
// kept only until the first bootstrap ends) and unseals it. It reports whether it holds the root token of a
// fresh initialisation.
func (p *Provisioner) OpenVault(ctx context.Context) (fresh bool, err error) {
	c, cancel := p.ctx(ctx)
	defer cancel()
	inited, err := p.vault.Sys().InitStatusWithContext(c)
	if err != nil {
		return false, fmt.Errorf("vault init status: %w", err)
	}
	if !inited {
		resp, err := p.vault.Sys().InitWithContext(c, &vault.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return false, fmt.Errorf("vault init: %w", err)
		}
		if err := writeSecretFile(p.unsealKeyFile(), resp.KeysB64[0]); err != nil {
			return false, err
		}
		if err := writeSecretFile(p.pendingRootFile(), resp.RootToken); err != nil {
			return false, err
		}
		p.logger.Info("vault initialised; unseal key written", "file", p.unsealKeyFile())
	}
	if root, err := readSecretFile(p.pendingRootFile()); err == nil {
		p.vault.SetToken(root)
		p.root = true
		p.logger.Warn("first bootstrap: using the root token until the operator token replaces it")
	}
	if err := p.Unseal(ctx); err != nil {
		return false, err
	}
	return p.root, nil
}

// Unseal unseals Vault with the key from the state folder, if it is sealed.
func (p *Provisioner) Unseal(ctx context.Context) error {
	c, cancel := p.ctx(ctx)
	defer cancel()
	st, err := p.vault.Sys().SealStatusWithContext(c)
	if err != nil {
		return fmt.Errorf("vault seal status: %w", err)
	}
	if !st.Sealed {
		return nil
	}
	key, err := readSecretFile(p.unsealKeyFile())
	if err != nil {
		return fmt.Errorf("vault is sealed and its unseal key is missing: %w", err)
	}
	if _, err := p.vault.Sys().UnsealWithContext(c, key); err != nil {
		return fmt.Errorf("vault unseal: %w", err)
	}
	p.logger.Info("vault unsealed")
	return waitFor(ctx, "vault active", func() error {
		h, err := p.vault.Sys().HealthWithContext(ctx)
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
func (p *Provisioner) KeepUnsealed(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		err := p.Unseal(ctx)
		switch {
		case err != nil && !failing:
			p.logger.Warn("vault could not be checked or unsealed; retrying", "err", err, "every", interval)
			failing = true
		case err == nil && failing:
			p.logger.Info("vault answers and is unsealed")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Authenticate makes the Vault client use the operator token (unless it holds a fresh root token) and renews it,
// so a periodic operator token lives on while the stack is used.
func (p *Provisioner) Authenticate(ctx context.Context) error {
	if p.root {
		return nil
	}
	token, err := readSecretFile(p.operatorTokenFile())
	if err != nil {
		return fmt.Errorf("no operator token (%w); see the README's \"Operator access\" for how to get a new one", err)
	}
	p.vault.SetToken(token)
	c, cancel := p.ctx(ctx)
	defer cancel()
	if _, err := p.vault.Auth().Token().RenewSelfWithContext(c, 0); err != nil {
		return fmt.Errorf("the operator token in %s is not valid: %w; see the README's \"Operator access\"", p.operatorTokenFile(), err)
	}
	return nil
}

// UseToken makes the Vault client use token (the break-glass path: a root token from generate-root).
func (p *Provisioner) UseToken(token string, root bool) {
	p.vault.SetToken(token)
	p.root = root
}

// Bootstrap applies the whole control-plane configuration. It is idempotent: every start of the stack runs it.
// With a fresh root token it ends by creating the operator token and revoking the root token.
func (p *Provisioner) Bootstrap(ctx context.Context) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"policies", p.writePolicies},
		{"mounts", p.enableMounts},
		{"approle roles", p.approleRoles},
		{"connect CA login", p.connectCALogin},
		{"database", p.database},
		{"transit", p.transitKey},
		{"consul ACL system", p.consulAccess},
		{"consul", p.consulSetup},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("bootstrap %s: %w", s.name, err)
		}
	}
	if p.root {
		if err := p.handOver(ctx); err != nil {
			return fmt.Errorf("bootstrap operator token: %w", err)
		}
	}
	p.logger.Info("bootstrap done")
	return nil
}

// handOver creates the operator's periodic token, writes it to its 0600 file and revokes the root token.
func (p *Provisioner) handOver(ctx context.Context) error {
	c, cancel := p.ctx(ctx)
	defer cancel()
	sec, err := p.vault.Auth().Token().CreateOrphanWithContext(c, &vault.TokenCreateRequest{
		Policies: []string{"operator"}, NoDefaultPolicy: true, Period: "720h",
		DisplayName: "operator", Metadata: map[string]string{"created_by": "meshctl bootstrap"},
	})
	if err != nil {
		return err
	}
	if err := writeSecretFile(p.operatorTokenFile(), sec.Auth.ClientToken); err != nil {
		return err
	}
	if err := p.vault.Auth().Token().RevokeSelfWithContext(c, ""); err != nil {
		return fmt.Errorf("revoke the root token: %w", err)
	}
	if err := os.Remove(p.pendingRootFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	p.vault.SetToken(sec.Auth.ClientToken)
	p.root = false
	p.logger.Info("root token revoked; operator token written", "file", p.operatorTokenFile())
	return nil
}

// ReplaceOperatorToken is the break-glass path: with a root token made by `vault operator generate-root`, it
// writes a new operator token and revokes the root token.
func (p *Provisioner) ReplaceOperatorToken(ctx context.Context, rootToken string) error {
	p.UseToken(rootToken, true)
	// The operator policy may have changed with the repository: write it before minting a token with it.
	if err := p.writePolicies(ctx); err != nil {
		return err
	}
	// A stack from before the Connect CA's AppRole gets it here; its next bootstrap moves the CA onto it.
	if err := p.connectCALoginRole(ctx); err != nil {
		return err
	}
	return p.handOver(ctx)
}

// waitFor polls check every 200 ms until it succeeds or ctx ends.
func waitFor(ctx context.Context, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// writeSecretFile writes value to path (0600) atomically, so a reader never sees half a secret.
func writeSecretFile(path, value string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeOwnedSecret(path, value, -1, -1)
}

func readSecretFile(path string) (string, error) {
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
