package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	consul "github.com/hashicorp/consul/api"

	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/servicedir"
)

// Identities gives each service instance and Consul client agent its credentials and replaces them: an
// instance's role_id, response-wrapped secret_id and Consul token with its service's identity, an agent's token
// with its node's identity.
type Identities struct {
	s   *Session
	acl *ConsulACL
}

// NewIdentities returns the credential delivery on s; acl leases the Consul token that mints tokens.
func NewIdentities(s *Session, acl *ConsulACL) *Identities {
	return &Identities{s: s, acl: acl}
}

// Instance is one running copy of a service: what it is (its AppRole and Consul service name), its ID in Consul,
// and the folder its credentials are delivered to (readable by its OS user only; the caller sets the owner).
type Instance struct {
	Service string // order, gateway, order-migrate
	ID      string // order-1, gateway-1, …; Consul's service ID and the secret_id's metadata
	Dir     string
	// Consul says whether the instance registers with Consul (and so gets a Consul token).
	Consul bool
	// Owner, when set ("uid:gid"), becomes the owner of Dir and its files: the service's user in a container
	// whose volume a root-run delivery fills. The local stack sets owners itself (scripts/stack.sh).
	Owner string
	// NATS, when set, is the role of the instance's NATS identity (nats/permissions/<role>.conf): `meshctl setup`
	// delivers its nkey seed with the rest. The local stack delivers it with `meshctl nats-key`.
	NATS string
}

// Files in an instance's credentials folder.
const (
	RoleIDFile          = "role-id"
	SecretIDFile        = "secret-id" // a response-wrapping token; the service unwraps it
	ConsulTokenFile     = "consul-token"
	consulAccessorFile  = "consul-token.accessor"
	consulPreviousFile  = "consul-token.previous-accessor"
	secretIDAccessorTag = "instance"
)

// open opens the instance's folder without following links (platform/servicedir): after the first delivery it
// belongs to the service's account, which may have planted a link at any name in it. The folder is made when
// missing and given to Owner when set; files written into it belong to the folder's owner.
func (ids *Identities) open(i Instance) (*servicedir.Dir, error) {
	return openServiceDir(i.Dir, i.Owner, ids.s.logger)
}

func openServiceDir(dir, owner string, logger *slog.Logger) (*servicedir.Dir, error) {
	d, err := servicedir.Create(dir, 0o700, logger)
	if err != nil {
		return nil, err
	}
	if owner != "" {
		o, err := servicedir.ParseOwner(owner)
		if err == nil {
			err = d.Own(o, 0o700)
		}
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// checkNames refuses a delivery before anything is minted when a name it writes holds a planted link (the
// writes refuse it again; this keeps Vault and Consul free of credentials that could not be delivered).
func checkNames(d *servicedir.Dir, names ...string) error {
	for _, n := range names {
		if _, err := d.Exists(n); err != nil {
			return err
		}
	}
	return nil
}

// readTrimmed reads a small file root wrote into a service folder ("" when it is missing).
func readTrimmed(d *servicedir.Dir, name string) (string, error) {
	b, err := d.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// writeServiceSecret writes a non-empty secret (0600) into a service folder.
func writeServiceSecret(d *servicedir.Dir, name, value string) error {
	if value == "" {
		return fmt.Errorf("refusing to write an empty secret to %s", filepath.Join(d.Path(), name))
	}
	return d.WriteFile(name, []byte(value), 0o600)
}

// MeshOnly are the services the stack runs from others' binaries (NATS, and Jaeger where spans go through the
// mesh): each instance registers with Consul and gets a Consul token with its service's identity, but logs in to
// nothing in Vault.
var MeshOnly = []string{"nats", "jaeger"}

func (i Instance) valid() error {
	if !slices.Contains(Roles, i.Service) && !slices.Contains(MeshOnly, i.Service) {
		return fmt.Errorf("unknown service %q (want one of %s)", i.Service, strings.Join(append(Roles, MeshOnly...), ", "))
	}
	if slices.Contains(MeshOnly, i.Service) && !i.Consul {
		return fmt.Errorf("service %q only has a Consul identity: deliver it with Consul", i.Service)
	}
	if i.ID == "" || i.Dir == "" {
		return errors.New("an instance needs an ID and a credentials folder")
	}
	return nil
}

// Deliver gives an instance what it needs to start: its role_id, a new response-wrapped secret_id (the previous
// ones of this instance are destroyed), and, for a mesh service, a Consul token with its service's identity
// (kept across restarts while Consul still knows it).
func (ids *Identities) Deliver(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	d, err := ids.open(inst)
	if err != nil {
		return err
	}
	defer d.Close()
	vaultLogin := !slices.Contains(MeshOnly, inst.Service)
	var names []string
	if vaultLogin {
		names = append(names, RoleIDFile, SecretIDFile)
	}
	if inst.Consul {
		names = append(names, ConsulTokenFile, consulAccessorFile)
	}
	if err := checkNames(d, names...); err != nil {
		return fmt.Errorf("deliver %s: %w", inst.ID, err)
	}
	if vaultLogin {
		sec, err := ids.s.read(ctx, "auth/approle/role/"+inst.Service+"/role-id")
		if err != nil {
			return err
		}
		roleID, _ := sec.Data["role_id"].(string)
		if err := writeServiceSecret(d, RoleIDFile, roleID); err != nil {
			return err
		}
		if err := ids.deliverSecretID(ctx, inst, d); err != nil {
			return err
		}
	}
	if inst.Consul {
		if err := ids.ensureServiceToken(ctx, inst, d); err != nil {
			return err
		}
	}
	ids.s.logger.Info("credentials delivered", "instance", inst.ID, "service", inst.Service, "dir", inst.Dir)
	return nil
}

// parseOwner reads "uid:gid" or "uid" (the group then equals the uid).
func parseOwner(owner string) (uid, gid int, err error) {
	u, g, found := strings.Cut(owner, ":")
	if !found {
		g = u
	}
	if uid, err = strconv.Atoi(u); err == nil {
		gid, err = strconv.Atoi(g)
	}
	if err != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("owner %q: want numeric uid:gid", owner)
	}
	return uid, gid, nil
}

// DeliverSecretID writes a new secret_id for the instance, response-wrapped for WrapTTL, then destroys the
// instance's earlier secret_ids. The service unwraps a new file as soon as it sees it, so a stolen copy of the
// file is useless once the service has it, and the service notices if someone else unwrapped it first.
func (ids *Identities) DeliverSecretID(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	d, err := ids.open(inst)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := checkNames(d, SecretIDFile); err != nil {
		return fmt.Errorf("deliver a secret_id to %s: %w", inst.ID, err)
	}
	return ids.deliverSecretID(ctx, inst, d)
}

func (ids *Identities) deliverSecretID(ctx context.Context, inst Instance, d *servicedir.Dir) error {
	old, err := ids.secretIDAccessors(ctx, inst)
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(map[string]string{secretIDAccessorTag: inst.ID})
	wc, err := ids.s.vault.Clone()
	if err != nil {
		return err
	}
	wc.SetToken(ids.s.vault.Token())
	ttl := ids.s.cfg.Approle.WrapTTL
	if !ids.s.cfg.Approle.Wrap {
		ttl = ""
	}
	wc.SetWrappingLookupFunc(func(string, string) string { return ttl })
	c, cancel := ids.s.ctx(ctx)
	defer cancel()
	sec, err := wc.Logical().WriteWithContext(c, "auth/approle/role/"+inst.Service+"/secret-id", map[string]any{
		"metadata": string(meta),
	})
	if err != nil {
		return fmt.Errorf("new secret_id for %s: %w", inst.ID, err)
	}
	value := ""
	switch {
	case !ids.s.cfg.Approle.Wrap && sec != nil:
		value, _ = sec.Data["secret_id"].(string)
	case sec != nil && sec.WrapInfo != nil:
		value = sec.WrapInfo.Token
	}
	if value == "" {
		return fmt.Errorf("vault gave no secret_id (wrapped: %t) for %s", ids.s.cfg.Approle.Wrap, inst.ID)
	}
	if err := writeServiceSecret(d, SecretIDFile, value); err != nil {
		return err
	}
	for _, acc := range old {
		if err := ids.s.write(ctx, "auth/approle/role/"+inst.Service+"/secret-id-accessor/destroy",
			map[string]any{"secret_id_accessor": acc}); err != nil {
			return err
		}
	}
	ids.s.logger.Info("secret_id delivered", "instance", inst.ID, "wrapped", ids.s.cfg.Approle.Wrap, "wrap_ttl", ttl, "destroyed_previous", len(old))
	return nil
}

// secretIDAccessors lists the accessors of the role's secret_ids delivered to inst (by their metadata).
func (ids *Identities) secretIDAccessors(ctx context.Context, inst Instance) ([]string, error) {
	c, cancel := ids.s.ctx(ctx)
	defer cancel()
	list, err := ids.s.vault.Logical().ListWithContext(c, "auth/approle/role/"+inst.Service+"/secret-id")
	if err != nil {
		return nil, fmt.Errorf("list secret_ids of %s: %w", inst.Service, err)
	}
	if list == nil {
		return nil, nil
	}
	keys, _ := list.Data["keys"].([]any)
	var mine []string
	for _, k := range keys {
		acc, _ := k.(string)
		sec, err := ids.s.writeSecret(ctx, "auth/approle/role/"+inst.Service+"/secret-id-accessor/lookup",
			map[string]any{"secret_id_accessor": acc})
		if err != nil || sec == nil {
			continue // gone meanwhile
		}
		if md, _ := sec.Data["metadata"].(map[string]any); md[secretIDAccessorTag] == inst.ID {
			mine = append(mine, acc)
		}
	}
	return mine, nil
}

// ensureServiceToken keeps the instance's Consul token if Consul still knows it, else mints one whose only
// rights are its service's identity: register that service and its sidecar, discover others, nothing else.
// The check asks Consul with the token itself, so a restart (every supervised start delivers) needs no
// privilege; only minting does (withConsulWriter).
func (ids *Identities) ensureServiceToken(ctx context.Context, inst Instance, d *servicedir.Dir) error {
	if live, err := ids.serviceTokenLive(ctx, d); err != nil || live {
		return err
	}
	return ids.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		_, err := ids.mintServiceToken(ctx, c, inst, d)
		return err
	})
}

// serviceTokenLive says whether the instance's folder holds a token Consul still knows, with the accessor
// written beside it. Any failure to tell counts as not live: a new token is minted (and fails the same way
// if Consul is away).
func (ids *Identities) serviceTokenLive(ctx context.Context, d *servicedir.Dir) (bool, error) {
	acc, err := readTrimmed(d, consulAccessorFile)
	if err != nil {
		return false, err
	}
	secret, err := readTrimmed(d, ConsulTokenFile)
	if err != nil || acc == "" || secret == "" {
		return false, err
	}
	c, err := ids.s.consulWithToken(secret)
	if err != nil {
		return false, err
	}
	self, _, err := c.ACL().TokenReadSelf(ids.s.q(ctx))
	return err == nil && self != nil && self.AccessorID == acc, nil
}

// mintServiceToken creates a token for inst and writes it (and its accessor) into the instance's folder,
// returning the accessor of the token it replaced, if any.
func (ids *Identities) mintServiceToken(ctx context.Context, c *consul.Client, inst Instance, d *servicedir.Dir) (previous string, err error) {
	// Read before minting: a planted accessor file stops the rotation before Consul holds a token nobody gets.
	if previous, err = readTrimmed(d, consulAccessorFile); err != nil {
		return "", err
	}
	if err := checkNames(d, ConsulTokenFile); err != nil {
		return "", err
	}
	tok, _, err := c.ACL().TokenCreate(&consul.ACLToken{
		Description:       inst.ID + " (meshctl)",
		ServiceIdentities: []*consul.ACLServiceIdentity{{ServiceName: inst.Service}},
	}, ids.s.w(ctx))
	if err != nil {
		return "", fmt.Errorf("consul token for %s: %w", inst.ID, err)
	}
	if err := writeServiceSecret(d, ConsulTokenFile, tok.SecretID); err != nil {
		return "", err
	}
	if err := d.WriteFile(consulAccessorFile, []byte(tok.AccessorID+"\n"), 0o600); err != nil {
		return "", err
	}
	ids.s.logger.Info("consul token minted (service identity)", "instance", inst.ID, "service", inst.Service, "accessor", tok.AccessorID)
	return previous, nil
}

// RotateConsulToken mints a new token for the instance and keeps the old one's accessor for RetireConsulToken,
// which deletes it once the service and its sidecar use the new one.
func (ids *Identities) RotateConsulToken(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	d, err := ids.open(inst)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := checkNames(d, ConsulTokenFile, consulAccessorFile, consulPreviousFile); err != nil {
		return fmt.Errorf("rotate the consul token of %s: %w", inst.ID, err)
	}
	return ids.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		prev, err := ids.mintServiceToken(ctx, c, inst, d)
		if err != nil {
			return err
		}
		if prev == "" {
			return nil
		}
		return d.WriteFile(consulPreviousFile, []byte(prev+"\n"), 0o600)
	})
}

// RetireConsulToken deletes the token RotateConsulToken replaced.
func (ids *Identities) RetireConsulToken(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	d, err := ids.open(inst)
	if err != nil {
		return err
	}
	defer d.Close()
	acc, err := readTrimmed(d, consulPreviousFile)
	if err != nil || acc == "" {
		return err
	}
	if err := ids.awaitRegistrationWithNewToken(ctx, inst, d); err != nil {
		return fmt.Errorf("%w; the previous consul token of %s is kept", err, inst.ID)
	}
	if err := ids.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		_, err := c.ACL().TokenDelete(acc, ids.s.w(ctx))
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("delete the previous consul token of %s: %w", inst.ID, err)
	}
	ids.s.logger.Info("previous consul token deleted", "instance", inst.ID, "accessor", acc)
	return d.Remove(consulPreviousFile)
}

// awaitRegistrationWithNewToken waits until the agent holds the instance registered under the token in its
// folder (consulreg names the token's accessor in the registration's meta): before that, the agent still acts for
// the instance with the previous token, and deleting it would leave the registration without a valid one.
func (ids *Identities) awaitRegistrationWithNewToken(ctx context.Context, inst Instance, d *servicedir.Dir) error {
	acc, err := readTrimmed(d, consulAccessorFile)
	if err != nil {
		return err
	}
	secret, err := readTrimmed(d, ConsulTokenFile)
	if err != nil || acc == "" || secret == "" {
		return fmt.Errorf("no current consul token in %s (%v)", d.Path(), err)
	}
	c, err := ids.s.consulWithToken(secret) // the instance's own token reads its own registration
	if err != nil {
		return err
	}
	return waitFor(ctx, inst.ID+" registered with its new consul token", func() error {
		svc, _, err := c.Agent().Service(inst.ID, ids.s.q(ctx))
		if err != nil {
			return err
		}
		if got := svc.Meta[consulreg.TokenAccessorMeta]; got != acc {
			return fmt.Errorf("registered under token accessor %q", got)
		}
		return nil
	})
}

// Agent is a Consul client agent that needs a token with its node's identity before it starts: Compose runs one
// per pod, and its API is reachable only from its own pod (see deploy/README.md).
type Agent struct {
	Node string
	// File receives the agent's configuration with its token (an HCL file the agent loads at start).
	File  string
	Owner string // "uid:gid" of the agent's user
}

// agentTokenConfig is the HCL file an agent loads: its token and nothing else.
func agentTokenConfig(secret string) string {
	return fmt.Sprintf("# Written by meshctl: this agent's token (node identity). Readable by the agent's user only.\n"+
		"acl {\n  tokens {\n    agent = %q\n  }\n}\n", secret)
}

// DeliverAgentToken gives a client agent a token with its node's identity, kept across runs while Consul still
// knows it (its accessor sits beside the file).
func (ids *Identities) DeliverAgentToken(ctx context.Context, a Agent) error {
	if a.Node == "" || a.File == "" {
		return errors.New("an agent needs a node name and a file")
	}
	// The agent's folder belongs to the agent's user: written without following links, like an instance's.
	d, err := openServiceDir(filepath.Dir(a.File), a.Owner, ids.s.logger)
	if err != nil {
		return err
	}
	defer d.Close()
	file := filepath.Base(a.File)
	accessorFile := file + ".accessor"
	return ids.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		if live, err := ids.liveConsulToken(ctx, c, d, file, accessorFile); err != nil || live {
			return err
		}
		tok, _, err := c.ACL().TokenCreate(&consul.ACLToken{
			Description:    "agent " + a.Node + " (meshctl)",
			NodeIdentities: []*consul.ACLNodeIdentity{{NodeName: a.Node, Datacenter: ids.s.cfg.Consul.Datacenter}},
		}, ids.s.w(ctx))
		if err != nil {
			return fmt.Errorf("agent token for %s: %w", a.Node, err)
		}
		if err := writeServiceSecret(d, file, agentTokenConfig(tok.SecretID)); err != nil {
			return err
		}
		if err := d.WriteFile(accessorFile, []byte(tok.AccessorID+"\n"), 0o600); err != nil {
			return err
		}
		ids.s.logger.Info("consul agent token delivered (node identity)", "node", a.Node, "accessor", tok.AccessorID)
		return nil
	})
}

// liveConsulToken says whether d holds a token file whose accessor Consul still knows: then it is kept as it is.
func (ids *Identities) liveConsulToken(ctx context.Context, c *consul.Client, d *servicedir.Dir, tokenFile, accessorFile string) (bool, error) {
	acc, err := readTrimmed(d, accessorFile)
	if err != nil {
		return false, err
	}
	has, err := d.Exists(tokenFile)
	if err != nil || acc == "" || !has {
		return false, err
	}
	tok, _, err := c.ACL().TokenRead(acc, ids.s.q(ctx))
	return err == nil && tok != nil, nil
}
