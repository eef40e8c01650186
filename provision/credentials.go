package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	consul "github.com/hashicorp/consul/api"
)

// Instance is one running copy of a service: what it is (its AppRole and Consul service name), its ID in Consul,
// and the folder its credentials are delivered to (readable by its OS user only; the caller sets the owner).
type Instance struct {
	Service string // order, gateway, order-migrate
	ID      string // order-1, gateway-1, …; Consul's service ID and the secret_id's metadata
	Dir     string
	// Consul says whether the instance registers with Consul (and so gets a Consul token).
	Consul bool
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

func (i Instance) path(name string) string { return filepath.Join(i.Dir, name) }

func (i Instance) valid() error {
	if !slices.Contains(Roles, i.Service) {
		return fmt.Errorf("unknown service %q (want one of %s)", i.Service, strings.Join(Roles, ", "))
	}
	if i.ID == "" || i.Dir == "" {
		return errors.New("an instance needs an ID and a credentials folder")
	}
	return nil
}

// Deliver gives an instance what it needs to start: its role_id, a new response-wrapped secret_id (the previous
// ones of this instance are destroyed), and, for a mesh service, a Consul token with its service's identity
// (kept across restarts while Consul still knows it).
func (p *Provisioner) Deliver(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	if err := os.MkdirAll(inst.Dir, 0o700); err != nil {
		return err
	}
	sec, err := p.read(ctx, "auth/approle/role/"+inst.Service+"/role-id")
	if err != nil {
		return err
	}
	roleID, _ := sec.Data["role_id"].(string)
	if err := writeSecretFile(inst.path(RoleIDFile), roleID); err != nil {
		return err
	}
	if err := p.DeliverSecretID(ctx, inst); err != nil {
		return err
	}
	if inst.Consul {
		if err := p.withConsulToken(ctx, "provisioner", func(c *consul.Client) error {
			return p.ensureServiceToken(ctx, c, inst)
		}); err != nil {
			return err
		}
	}
	p.logger.Info("credentials delivered", "instance", inst.ID, "service", inst.Service, "dir", inst.Dir)
	return nil
}

// DeliverSecretID writes a new secret_id for the instance, response-wrapped for WrapTTL, then destroys the
// instance's earlier secret_ids. The service unwraps a new file as soon as it sees it, so a stolen copy of the
// file is useless once the service has it, and the service notices if someone else unwrapped it first.
func (p *Provisioner) DeliverSecretID(ctx context.Context, inst Instance) error {
	old, err := p.secretIDAccessors(ctx, inst)
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(map[string]string{secretIDAccessorTag: inst.ID})
	wc, err := p.vault.Clone()
	if err != nil {
		return err
	}
	wc.SetToken(p.vault.Token())
	ttl := p.cfg.Approle.WrapTTL
	wc.SetWrappingLookupFunc(func(string, string) string { return ttl })
	c, cancel := p.ctx(ctx)
	defer cancel()
	sec, err := wc.Logical().WriteWithContext(c, "auth/approle/role/"+inst.Service+"/secret-id", map[string]any{
		"metadata": string(meta),
	})
	if err != nil {
		return fmt.Errorf("new secret_id for %s: %w", inst.ID, err)
	}
	if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		return fmt.Errorf("vault did not wrap the secret_id for %s", inst.ID)
	}
	if err := writeSecretFile(inst.path(SecretIDFile), sec.WrapInfo.Token); err != nil {
		return err
	}
	for _, acc := range old {
		if err := p.write(ctx, "auth/approle/role/"+inst.Service+"/secret-id-accessor/destroy",
			map[string]any{"secret_id_accessor": acc}); err != nil {
			return err
		}
	}
	p.logger.Info("secret_id delivered (wrapped)", "instance", inst.ID, "wrap_ttl", ttl, "destroyed_previous", len(old))
	return nil
}

// secretIDAccessors lists the accessors of the role's secret_ids delivered to inst (by their metadata).
func (p *Provisioner) secretIDAccessors(ctx context.Context, inst Instance) ([]string, error) {
	c, cancel := p.ctx(ctx)
	defer cancel()
	list, err := p.vault.Logical().ListWithContext(c, "auth/approle/role/"+inst.Service+"/secret-id")
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
		sec, err := p.writeSecret(ctx, "auth/approle/role/"+inst.Service+"/secret-id-accessor/lookup",
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
func (p *Provisioner) ensureServiceToken(ctx context.Context, c *consul.Client, inst Instance) error {
	if b, err := os.ReadFile(inst.path(consulAccessorFile)); err == nil {
		if _, err := os.Stat(inst.path(ConsulTokenFile)); err == nil {
			if tok, _, err := c.ACL().TokenRead(strings.TrimSpace(string(b)), p.q(ctx)); err == nil && tok != nil {
				return nil
			}
		}
	}
	_, err := p.mintServiceToken(ctx, c, inst)
	return err
}

// mintServiceToken creates a token for inst and writes it (and its accessor) into the instance's folder,
// returning the accessor of the token it replaced, if any.
func (p *Provisioner) mintServiceToken(ctx context.Context, c *consul.Client, inst Instance) (previous string, err error) {
	tok, _, err := c.ACL().TokenCreate(&consul.ACLToken{
		Description:       inst.ID + " (meshctl)",
		ServiceIdentities: []*consul.ACLServiceIdentity{{ServiceName: inst.Service}},
	}, p.w(ctx))
	if err != nil {
		return "", fmt.Errorf("consul token for %s: %w", inst.ID, err)
	}
	if b, err := os.ReadFile(inst.path(consulAccessorFile)); err == nil {
		previous = strings.TrimSpace(string(b))
	}
	if err := writeSecretFile(inst.path(ConsulTokenFile), tok.SecretID); err != nil {
		return "", err
	}
	if err := os.WriteFile(inst.path(consulAccessorFile), []byte(tok.AccessorID+"\n"), 0o600); err != nil {
		return "", err
	}
	p.logger.Info("consul token minted (service identity)", "instance", inst.ID, "service", inst.Service, "accessor", tok.AccessorID)
	return previous, nil
}

// RotateConsulToken mints a new token for the instance and keeps the old one's accessor for RetireConsulToken,
// which deletes it once the service and its sidecar use the new one.
func (p *Provisioner) RotateConsulToken(ctx context.Context, inst Instance) error {
	if err := inst.valid(); err != nil {
		return err
	}
	return p.withConsulToken(ctx, "provisioner", func(c *consul.Client) error {
		prev, err := p.mintServiceToken(ctx, c, inst)
		if err != nil {
			return err
		}
		if prev == "" {
			return nil
		}
		return os.WriteFile(inst.path(consulPreviousFile), []byte(prev+"\n"), 0o600)
	})
}

// RetireConsulToken deletes the token RotateConsulToken replaced.
func (p *Provisioner) RetireConsulToken(ctx context.Context, inst Instance) error {
	b, err := os.ReadFile(inst.path(consulPreviousFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	acc := strings.TrimSpace(string(b))
	if err := p.withConsulToken(ctx, "provisioner", func(c *consul.Client) error {
		_, err := c.ACL().TokenDelete(acc, p.w(ctx))
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("delete the previous consul token of %s: %w", inst.ID, err)
	}
	p.logger.Info("previous consul token deleted", "instance", inst.ID, "accessor", acc)
	return os.Remove(inst.path(consulPreviousFile))
}
