package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

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

// agentAccessorFile keeps the accessor of an agent's node token: one agent's (Consul.Servers empty), or the
// named server's.
func (s *Session) agentAccessorFile(node string) string {
	if s.cfg.Consul.Servers == "" {
		return filepath.Join(s.cfg.Vault.StateDir, "consul-agent-token.accessor")
	}
	return filepath.Join(s.cfg.Vault.StateDir, "consul-agent-token."+node+".accessor")
}

// ctx bounds one call.
func (s *Session) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.cfg.Timeout)
}

// Authenticate makes the Vault client use the operator token (unless it holds a fresh root token) and renews it,
// so a periodic operator token lives on while the stack is used.
func (s *Session) Authenticate(ctx context.Context) error {
	if err := s.useActiveNode(ctx); err != nil {
		return err
	}
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

// vaultNodes are clients of each node of a Vault cluster (Vault.Nodes), holding no token, or the session's own
// client when Vault is one server.
func (s *Session) vaultNodes() ([]*vault.Client, error) {
	addrs := strings.Fields(s.cfg.Vault.Nodes)
	if len(addrs) == 0 {
		return []*vault.Client{s.vault}, nil
	}
	out := make([]*vault.Client, 0, len(addrs))
	for _, a := range addrs {
		c, err := s.vault.Clone()
		if err != nil {
			return nil, err
		}
		c.ClearToken()
		if err := c.SetAddress(a); err != nil {
			return nil, fmt.Errorf("vault node %q: %w", a, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// useActiveNode points the session's client at the active node of a Vault cluster, so that a run's calls neither
// reach a node still sealed after a restart nor take a standby's forwarding hop. It waits for an election.
func (s *Session) useActiveNode(ctx context.Context) error {
	if s.cfg.Vault.Nodes == "" {
		return nil
	}
	nodes, err := s.vaultNodes()
	if err != nil {
		return err
	}
	return waitFor(ctx, "an active vault node", func() error {
		for _, n := range nodes {
			c, cancel := s.ctx(ctx)
			h, err := n.Sys().HealthWithContext(c)
			cancel()
			if err == nil && h.Initialized && !h.Sealed && !h.Standby {
				return s.vault.SetAddress(n.Address())
			}
		}
		return errors.New("no node is active")
	})
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

// consulWithToken is a Consul client with token, at Consul.Addr. With a cluster's servers listed
// (Consul.Servers), it is a client of the first server whose front answers and
// whose server knows its leader: the shared name (Addr) may lead to the front of a server that is down, which
// answers 502.
func (s *Session) consulWithToken(token string) (*consul.Client, error) {
	servers, err := parseServers(s.cfg.Consul.Servers)
	if err != nil {
		return nil, err
	}
	for _, srv := range servers {
		c, err := s.consulAt(srv.addr, token)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		leader, err := c.Status().LeaderWithQueryOptions((&consul.QueryOptions{}).WithContext(ctx))
		cancel()
		if err == nil && leader != "" {
			return c, nil
		}
	}
	return s.consulAt(s.cfg.Consul.Addr, token)
}

// consulAt is a Consul client of one agent, at addr, with token.
func (s *Session) consulAt(addr, token string) (*consul.Client, error) {
	cc := consul.DefaultConfig()
	cc.Address = addr
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
