package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/hcl"
)

// ConsulACL runs Consul's ACL system through Vault's Consul secrets engine: Vault bootstraps the ACL system and
// keeps its management token; this unit writes the Consul policies and Vault's roles on them, the server agent's
// token and the intentions, and leases the short-lived Consul tokens the other units write with.
type ConsulACL struct {
	s *Session
}

// NewConsulACL returns the Consul ACL unit on s.
func NewConsulACL(s *Session) *ConsulACL {
	return &ConsulACL{s: s}
}

// Vault's roles on its Consul secrets engine, each a Consul policy of the same name (consul/policies/*.hcl).
var consulRoles = []struct{ name, ttl, maxTTL string }{
	{"provisioner", "10m", "1h"}, // meshctl, for one run
	{"ui-read", "8h", "24h"},     // an operator's login to the UI (make consul-ui-token)
	{"operator", "1h", "8h"},     // the runbook's consul CLI
}

// consulAccess points Vault's Consul secrets engine at the agent. On a Consul whose ACL system is not yet
// bootstrapped, Vault bootstraps it and keeps the management token as its own configuration: no person or
// file ever holds it. With the root token (first bootstrap) it also creates the Consul policies and Vault's
// roles on them.
func (acl *ConsulACL) consulAccess(ctx context.Context) error {
	cfg, err := acl.s.read(ctx, "consul/config/access")
	if err != nil && !strings.Contains(err.Error(), "haven't been configured") {
		return err
	}
	if cfg == nil || cfg.Data["address"] == nil {
		if !acl.s.root {
			return errors.New("vault's consul engine is not configured and this is not a first bootstrap; " +
				"use the break-glass path (README, \"Operator access\")")
		}
		addr := strings.TrimPrefix(strings.TrimPrefix(acl.s.cfg.Consul.Addr, "http://"), "https://")
		scheme := "http"
		if strings.HasPrefix(acl.s.cfg.Consul.Addr, "https://") {
			scheme = "https"
		}
		// Right after its election the leader may not take a bootstrap yet: try for a few seconds.
		var err error
		access := map[string]any{"address": addr, "scheme": scheme}
		if scheme == "https" {
			// Vault verifies Consul's listener against the project's CA, not the system's roots.
			ca, err := os.ReadFile(acl.s.cfg.Vault.CACert)
			if err != nil {
				return err
			}
			access["ca_cert"] = string(ca)
		}
		for try := 0; try < 15; try++ {
			if err = acl.s.write(ctx, "consul/config/access", access); err == nil ||
				strings.Contains(err.Error(), "no longer allowed") {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return fmt.Errorf("%w (a Consul whose ACL system was bootstrapped before cannot be taken over: "+
				"its data folder and Vault's must be started afresh together)", err)
		}
		acl.s.logger.Info("consul ACL system bootstrapped by vault; vault keeps the management token")
	}
	if !acl.s.root {
		return nil
	}
	if err := acl.createConsulPolicies(ctx); err != nil {
		return err
	}
	for _, r := range consulRoles {
		if err := acl.s.write(ctx, "consul/roles/"+r.name, map[string]any{
			"consul_policies": r.name, "ttl": r.ttl, "max_ttl": r.maxTTL,
		}); err != nil {
			return err
		}
	}
	acl.s.logger.Info("vault roles for consul tokens ready", "roles", "provisioner,ui-read,operator")
	return nil
}

// createConsulPolicies runs once, at the first bootstrap: the policies the roles name must exist before a token
// can be leased on them, so a management token is leased for a minute on a role that is deleted right after.
func (acl *ConsulACL) createConsulPolicies(ctx context.Context) error {
	if err := acl.s.write(ctx, "consul/roles/bootstrap", map[string]any{
		"consul_policies": "global-management", "ttl": "2m", "max_ttl": "2m",
	}); err != nil {
		return err
	}
	defer func() {
		c, cancel := acl.s.ctx(context.WithoutCancel(ctx))
		defer cancel()
		if _, err := acl.s.vault.Logical().DeleteWithContext(c, "consul/roles/bootstrap"); err != nil {
			acl.s.logger.Warn("could not delete vault's consul/roles/bootstrap", "err", err)
		}
	}()
	return acl.withConsulToken(ctx, "bootstrap", func(c *consul.Client) error { return acl.upsertConsulPolicies(ctx, c) })
}

// withConsulWriter runs fn with a Consul token that may create and delete tokens (acl = "write"): provisioning.
// The day-2 operator's token cannot lease one (vault/policies/operator.hcl), so a run that holds neither the
// first bootstrap's root token nor a provisioning token gets one for this call (BeginProvisioning).
func (acl *ConsulACL) withConsulWriter(ctx context.Context, fn func(*consul.Client) error) error {
	if !acl.s.root && !acl.s.admin {
		end, err := acl.s.BeginProvisioning(ctx)
		if err != nil {
			return err
		}
		defer end()
	}
	return acl.withConsulToken(ctx, "provisioner", fn)
}

// withConsulToken leases a Consul token on Vault's role, runs fn with a client using it, and revokes the lease.
func (acl *ConsulACL) withConsulToken(ctx context.Context, role string, fn func(*consul.Client) error) error {
	sec, err := acl.s.read(ctx, "consul/creds/"+role)
	if err != nil {
		return err
	}
	if sec == nil {
		return fmt.Errorf("vault has no consul role %q", role)
	}
	token, _ := sec.Data["token"].(string)
	defer func() {
		c, cancel := acl.s.ctx(context.WithoutCancel(ctx))
		defer cancel()
		if err := acl.s.vault.Sys().RevokeWithContext(c, sec.LeaseID); err != nil {
			acl.s.logger.Warn("could not revoke a consul token lease (it expires by itself)", "role", role, "err", err)
		}
	}()
	client, err := acl.s.consulWithToken(token)
	if err != nil {
		return err
	}
	// A new token reaches the agent's ACL cache at once on a single server, but give replication a moment.
	if err := waitFor(ctx, "consul token usable", func() error {
		_, _, err := client.ACL().TokenReadSelf(nil)
		return err
	}); err != nil {
		return err
	}
	return fn(client)
}

// upsertConsulPolicies writes consul/policies/*.hcl as Consul ACL policies of the same names.
func (acl *ConsulACL) upsertConsulPolicies(ctx context.Context, c *consul.Client) error {
	files, err := filepath.Glob(filepath.Join(acl.s.cfg.Repo, "consul", "policies", "*.hcl"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no policies under %s/consul/policies (%v)", acl.s.cfg.Repo, err)
	}
	existing, _, err := c.ACL().PolicyList(acl.s.q(ctx))
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, e := range existing {
		ids[e.Name] = e.ID
	}
	for _, f := range files {
		rules, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		pol := &consul.ACLPolicy{Name: strings.TrimSuffix(filepath.Base(f), ".hcl"), Rules: string(rules),
			Description: "from consul/policies/" + filepath.Base(f)}
		if id, ok := ids[pol.Name]; ok {
			pol.ID = id
			_, _, err = c.ACL().PolicyUpdate(pol, acl.s.w(ctx))
		} else {
			_, _, err = c.ACL().PolicyCreate(pol, acl.s.w(ctx))
		}
		if err != nil {
			return fmt.Errorf("consul policy %s: %w", pol.Name, err)
		}
	}
	return nil
}

// agentToken gives each server agent a token with its node's identity (for its own catalog entry and
// anti-entropy). The agent persists it in its data folder; only its accessor (not a secret) is kept here. A token
// that exists already is given again, so a server replaced with an empty data folder gets it too.
func (acl *ConsulACL) agentToken(ctx context.Context, c *consul.Client) error {
	servers, err := parseServers(acl.s.cfg.Consul.Servers)
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		return acl.nodeToken(ctx, c, c, acl.s.cfg.Consul.Node)
	}
	self, _, err := c.ACL().TokenReadSelf(acl.s.q(ctx)) // the run's token, to call each server with
	if err != nil {
		return fmt.Errorf("read the run's consul token: %w", err)
	}
	for _, srv := range servers {
		agent, err := acl.s.consulAt(srv.addr, self.SecretID)
		if err != nil {
			return err
		}
		if err := acl.nodeToken(ctx, c, agent, srv.node); err != nil {
			return fmt.Errorf("server %s: %w", srv.node, err)
		}
	}
	return nil
}

// consulServer is one entry of Consul.Servers.
type consulServer struct{ node, addr string }

// parseServers reads "node=address node=address".
func parseServers(list string) ([]consulServer, error) {
	var out []consulServer
	for _, f := range strings.Fields(list) {
		node, addr, ok := strings.Cut(f, "=")
		if !ok || node == "" || addr == "" {
			return nil, fmt.Errorf("consul servers: %q is not node=address", f)
		}
		out = append(out, consulServer{node, addr})
	}
	return out, nil
}

// nodeToken sets node's token on agent, creating it (through c) the first time.
func (acl *ConsulACL) nodeToken(ctx context.Context, c, agent *consul.Client, node string) error {
	file := acl.s.agentAccessorFile(node)
	var tok *consul.ACLToken
	if b, err := os.ReadFile(file); err == nil {
		tok, _, _ = c.ACL().TokenRead(strings.TrimSpace(string(b)), acl.s.q(ctx))
	}
	created := tok == nil
	if created {
		var err error
		tok, _, err = c.ACL().TokenCreate(&consul.ACLToken{
			Description:    "agent " + node + " (meshctl)",
			NodeIdentities: []*consul.ACLNodeIdentity{{NodeName: node, Datacenter: acl.s.cfg.Consul.Datacenter}},
		}, acl.s.w(ctx))
		if err != nil {
			return fmt.Errorf("create the agent token: %w", err)
		}
	}
	if _, err := agent.Agent().UpdateAgentACLToken(tok.SecretID, acl.s.w(ctx)); err != nil {
		return fmt.Errorf("give the agent its token: %w", err)
	}
	if !created {
		return nil
	}
	if err := os.WriteFile(file, []byte(tok.AccessorID+"\n"), 0o600); err != nil {
		return err
	}
	acl.s.logger.Info("consul agent token set (node identity)", "node", node, "accessor", tok.AccessorID)
	return nil
}

// applyIntentions writes consul/intentions-*.hcl as config entries; writing the same entry again changes nothing.
func (acl *ConsulACL) applyIntentions(ctx context.Context, c *consul.Client) error {
	files, err := filepath.Glob(filepath.Join(acl.s.cfg.Repo, "consul", "intentions-*.hcl"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no intentions under %s/consul (%v)", acl.s.cfg.Repo, err)
	}
	for _, f := range files {
		entry, err := readConfigEntry(f)
		if err != nil {
			return err
		}
		if _, _, err := c.ConfigEntries().Set(entry, acl.s.w(ctx)); err != nil {
			return fmt.Errorf("intentions %s: %w", filepath.Base(f), err)
		}
	}
	acl.s.logger.Info("intentions applied", "files", len(files))
	return nil
}

// readConfigEntry decodes an HCL config entry file, as `consul config write` does.
func readConfigEntry(path string) (consul.ConfigEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := hcl.Decode(&raw, string(b)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	entry, err := consul.DecodeConfigEntry(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return entry, nil
}
