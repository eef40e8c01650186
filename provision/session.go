package provision

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
)

// Session is one run's hold on the control plane, which every unit of this package shares: the Vault and Consul
// clients, the configuration, the logger, and which credential the Vault client holds (the operator token, a
// first bootstrap's root token or this run's provisioning token). It signs in and makes the calls; the units
// decide what to call.
type Session struct {
	cfg    Config
	vault  *vault.Client
	consul *consul.Client
	logger *slog.Logger
	// root is true while the Vault client holds the root token of a first bootstrap.
	root bool
	// admin is true while it holds this run's provisioning token (BeginProvisioning): root policy, minutes.
	admin bool
}

// NewSession returns a Session for cfg, holding no token yet. It does not call Vault or Consul.
func NewSession(cfg Config, logger *slog.Logger) (*Session, error) {
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
	return &Session{cfg: cfg, vault: vclient, consul: cclient, logger: logger}, nil
}

func (s *Session) unsealKeyFile() string {
	if s.cfg.Vault.UnsealKeyFile != "" {
		return s.cfg.Vault.UnsealKeyFile
	}
	return filepath.Join(s.cfg.Vault.StateDir, "unseal-key")
}

// pendingRootFile holds the root token only while a first bootstrap has not finished (so a failed first run can
// be run again); the hand-over to the operator token deletes it with the token's revocation.
func (s *Session) pendingRootFile() string {
	return filepath.Join(s.cfg.Vault.StateDir, "root-token.bootstrap-pending")
}

func (s *Session) operatorTokenFile() string {
	return filepath.Join(s.cfg.Vault.StateDir, "operator-token")
}

func (s *Session) agentAccessorFile() string {
	return filepath.Join(s.cfg.Vault.StateDir, "consul-agent-token.accessor")
}

// ctx bounds one call.
func (s *Session) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.cfg.Timeout)
}

// Authenticate makes the Vault client use the operator token (unless it holds a fresh root token) and renews it,
// so a periodic operator token lives on while the stack is used.
func (s *Session) Authenticate(ctx context.Context) error {
	if s.root {
		return nil
	}
	token, err := readSecretFile(s.operatorTokenFile())
	if err != nil {
		return fmt.Errorf("no operator token (%w); see the README's \"Operator access\" for how to get a new one", err)
	}
	s.vault.SetToken(token)
	c, cancel := s.ctx(ctx)
	defer cancel()
	if _, err := s.vault.Auth().Token().RenewSelfWithContext(c, 0); err != nil {
		return fmt.Errorf("the operator token in %s is not valid: %w; see the README's \"Operator access\"", s.operatorTokenFile(), err)
	}
	return nil
}

// UseToken makes the Vault client use token (the break-glass path: a root token from generate-root).
func (s *Session) UseToken(token string, root bool) {
	s.vault.SetToken(token)
	s.root = root
}

func (s *Session) read(ctx context.Context, path string) (*vault.Secret, error) {
	c, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.vault.Logical().ReadWithContext(c, path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return sec, nil
}

func (s *Session) write(ctx context.Context, path string, data map[string]any) error {
	_, err := s.writeSecret(ctx, path, data)
	return err
}

func (s *Session) writeSecret(ctx context.Context, path string, data map[string]any) (*vault.Secret, error) {
	c, cancel := s.ctx(ctx)
	defer cancel()
	sec, err := s.vault.Logical().WriteWithContext(c, path, data)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return sec, nil
}

func (s *Session) consulWithToken(token string) (*consul.Client, error) {
	cc := consul.DefaultConfig()
	cc.Address = s.cfg.Consul.Addr
	cc.Token = token
	cc.TokenFile = ""
	cc.TLSConfig.CAFile = s.cfg.Vault.CACert
	cc.WaitTime = s.cfg.Timeout
	return consul.NewClient(cc)
}

func (s *Session) q(ctx context.Context) *consul.QueryOptions {
	return (&consul.QueryOptions{}).WithContext(ctx)
}

func (s *Session) w(ctx context.Context) *consul.WriteOptions {
	return (&consul.WriteOptions{}).WithContext(ctx)
}
