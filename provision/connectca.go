package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
)

// ConnectCA makes Vault's PKI Consul's Connect CA and rotates it: the CA's own AppRole login, delivered as files
// Consul reads, and the generations of PKI mounts Consul signs with.
type ConnectCA struct {
	s   *Session
	acl *ConsulACL
	// caLoginReady: this run delivered the Connect CA's AppRole login (connectCALogin).
	caLoginReady bool
}

// NewConnectCA returns the Connect CA unit on s; acl leases the Consul token that changes the CA configuration.
func NewConnectCA(s *Session, acl *ConsulACL) *ConnectCA {
	return &ConnectCA{s: s, acl: acl}
}

// Consul's Vault CA provider logs in through an AppRole of its own, so its CA configuration holds file paths and
// no token: any Consul token that may read the CA configuration (the runbook's operator token) would otherwise
// read a Vault token that signs any leaf.
const (
	// caLoginMount is not the services' approle/: `rotate logins` revokes every auth/approle/login lease, which
	// would take the Connect CA's token with it.
	caLoginMount = "approle-connect-ca"
	caLoginRole  = "connect-ca" // bound to vault/policies/connect-ca.hcl
)

// ConnectCAConfig says where the Connect CA's AppRole login lives on disk.
type ConnectCAConfig struct {
	// LoginDir is where meshctl writes the role_id and secret_id (0700 folder, 0600 files).
	LoginDir string `conf:"help:the Connect CA's AppRole login folder (empty means consul-ca beside the Vault state folder)"`
	// ConsulDir is the same folder as the Consul server sees it (Compose mounts the volume elsewhere).
	ConsulDir string `conf:"help:the login folder as the Consul server sees it (empty means the login folder)"`
	// Owner is the Consul server's uid:gid when it is not meshctl's user (Compose); empty: meshctl's own user.
	Owner string `conf:"help:numeric uid and gid of the Consul server that owns the login folder"`
}

func (cc *ConnectCA) caLoginDir() string {
	if cc.s.cfg.ConnectCA.LoginDir != "" {
		return cc.s.cfg.ConnectCA.LoginDir
	}
	return filepath.Join(filepath.Dir(cc.s.cfg.Vault.StateDir), "consul-ca")
}

// caAuthMethod is the provider's AuthMethod: Consul reads both files at every login (the secret_id file is never
// deleted by Consul) and logs in again whenever its token can no longer be renewed.
func (cc *ConnectCA) caAuthMethod() (map[string]any, error) {
	dir := cc.s.cfg.ConnectCA.ConsulDir
	if dir == "" {
		dir = cc.caLoginDir()
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Type": "approle", "MountPath": caLoginMount, "Params": map[string]any{
		"role_id_file_path":   filepath.Join(dir, RoleIDFile),
		"secret_id_file_path": filepath.Join(dir, SecretIDFile),
	}}, nil
}

// connectCALogin gets the Connect CA's AppRole ready: with a root token (the first bootstrap's, or the run's
// provisioning token) the mount and the role, then on every run a fresh secret_id in the login folder. With the
// operator token alone (which may not enable auth methods) it leaves the CA as it is and says how to move it.
func (cc *ConnectCA) connectCALogin(ctx context.Context) error {
	cc.caLoginReady = false
	if cc.s.root || cc.s.admin {
		if err := cc.connectCALoginRole(ctx); err != nil {
			return err
		}
	}
	c, cancel := cc.s.ctx(ctx)
	auths, err := cc.s.vault.Sys().ListAuthWithContext(c)
	cancel()
	if err != nil {
		return err
	}
	if _, ok := auths[caLoginMount+"/"]; !ok {
		cc.s.logger.Warn("the connect CA still logs in with a static vault token: its auth method is missing and "+
			"the operator token may not enable one; run the break-glass path (README, \"Operator access\") once, "+
			"then make run", "mount", caLoginMount)
		return nil
	}
	if err := cc.deliverCALogin(ctx); err != nil {
		return err
	}
	cc.caLoginReady = true
	return nil
}

// connectCALoginRole enables the CA's AppRole mount and writes its role (root only: a role names the policies
// its tokens get). Its tokens live an hour and at most a day; Consul renews them and
// logs in again from the files. Its secret_ids never expire, so a stack that runs for months without a bootstrap
// still logs in; every bootstrap replaces the secret_id and destroys the older ones (deliverCALogin).
func (cc *ConnectCA) connectCALoginRole(ctx context.Context) error {
	c, cancel := cc.s.ctx(ctx)
	defer cancel()
	auths, err := cc.s.vault.Sys().ListAuthWithContext(c)
	if err != nil {
		return err
	}
	if _, ok := auths[caLoginMount+"/"]; !ok {
		if err := cc.s.vault.Sys().EnableAuthWithOptionsWithContext(c, caLoginMount, &vault.EnableAuthOptions{
			Type: "approle", Description: "the Connect CA's login (Consul's Vault CA provider)"}); err != nil {
			return fmt.Errorf("enable auth/%s: %w", caLoginMount, err)
		}
	}
	role := map[string]any{
		"token_policies":          caLoginRole,
		"token_no_default_policy": true,
		"token_ttl":               "1h",
		"token_max_ttl":           "24h",
		"secret_id_ttl":           0,
		"secret_id_num_uses":      0,
	}
	// Bound to fixed addresses only: this role is written with a root token alone, so it cannot follow a Compose
	// network whose subnet Docker picks anew at every `up` (the services' roles are rewritten each run).
	if cc.s.cfg.Approle.Cidrs != "local-networks" {
		role["token_bound_cidrs"] = cc.s.cfg.Approle.Cidrs
		role["secret_id_bound_cidrs"] = cc.s.cfg.Approle.Cidrs
	}
	return cc.s.write(ctx, "auth/"+caLoginMount+"/role/"+caLoginRole, role)
}

// deliverCALogin writes the role_id and a new secret_id for Consul, then destroys every other secret_id of the
// role: a copy taken earlier dies at the next bootstrap. Consul reads the files only when it logs in, and its
// current token stays valid meanwhile.
func (cc *ConnectCA) deliverCALogin(ctx context.Context) error {
	rolePath := "auth/" + caLoginMount + "/role/" + caLoginRole
	dir := cc.caLoginDir()
	uid, gid := -1, -1
	if cc.s.cfg.ConnectCA.Owner != "" {
		var err error
		if uid, gid, err = parseOwner(cc.s.cfg.ConnectCA.Owner); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// A volume's root folder comes with the engine's mode: make it the server's alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	sec, err := cc.s.read(ctx, rolePath+"/role-id")
	if err != nil {
		return err
	}
	if sec == nil {
		return fmt.Errorf("vault has no role %s", rolePath)
	}
	roleID, _ := sec.Data["role_id"].(string)
	// Consul sends the role_id file as it is (it trims only the secret_id): no newline.
	if err := writeOwnedSecret(filepath.Join(dir, RoleIDFile), roleID, uid, gid); err != nil {
		return err
	}
	sec, err = cc.s.writeSecret(ctx, rolePath+"/secret-id", nil)
	if err != nil {
		return err
	}
	if sec == nil {
		return errors.New("vault gave no secret_id for the connect CA")
	}
	secretID, _ := sec.Data["secret_id"].(string)
	accessor, _ := sec.Data["secret_id_accessor"].(string)
	if err := writeOwnedSecret(filepath.Join(dir, SecretIDFile), secretID, uid, gid); err != nil {
		return err
	}
	c, cancel := cc.s.ctx(ctx)
	list, err := cc.s.vault.Logical().ListWithContext(c, rolePath+"/secret-id")
	cancel()
	if err != nil {
		return err
	}
	destroyed := 0
	if list != nil {
		keys, _ := list.Data["keys"].([]any)
		for _, k := range keys {
			if acc, _ := k.(string); acc != "" && acc != accessor {
				if err := cc.s.write(ctx, rolePath+"/secret-id-accessor/destroy", map[string]any{"secret_id_accessor": acc}); err != nil {
					return err
				}
				destroyed++
			}
		}
	}
	cc.s.logger.Info("connect CA login delivered", "dir", dir, "mount", caLoginMount, "destroyed_previous", destroyed)
	return nil
}

// writeOwnedSecret is writeSecretFile whose file belongs to uid:gid (-1: this process's) before it takes the
// name, so the reader never finds a file it may not open.
func writeOwnedSecret(path, value string, uid, gid int) error {
	if value == "" {
		return fmt.Errorf("refusing to write an empty secret to %s", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chown(uid, gid); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(value); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// caLoginCurrent tells whether a Vault CA configuration already logs in with want and holds no token.
func caLoginCurrent(cfg map[string]any, want map[string]any) bool {
	if tok, _ := cfg["Token"].(string); tok != "" {
		return false
	}
	got, _ := cfg["AuthMethod"].(map[string]any)
	if got == nil || got["Type"] != want["Type"] || got["MountPath"] != want["MountPath"] {
		return false
	}
	gp, _ := got["Params"].(map[string]any)
	wp, _ := want["Params"].(map[string]any)
	if len(gp) != len(wp) {
		return false
	}
	for k, v := range wp {
		if gp[k] != v {
			return false
		}
	}
	return true
}

// connectCA makes Vault's PKI the Connect CA, logging in through its AppRole. A configuration that still holds a
// token (a stack from before the AppRole) is set again on the same root, which Consul keeps, and the token it
// held is revoked.
func (cc *ConnectCA) connectCA(ctx context.Context, c *consul.Client) error {
	cur, _, err := c.Connect().CAGetConfig(cc.s.q(ctx))
	if err != nil {
		return fmt.Errorf("read the connect CA configuration: %w", err)
	}
	want, err := cc.caAuthMethod()
	if err != nil {
		return err
	}
	gen := 1
	if cur.Provider == "vault" {
		if caLoginCurrent(cur.Config, want) || !cc.caLoginReady {
			return nil
		}
		gen = max(caGeneration(cur), 1)
	} else if !cc.caLoginReady {
		return errors.New("the connect CA's AppRole login is not ready; run the break-glass path (README, \"Operator access\")")
	}
	oldToken, _ := cur.Config["Token"].(string)
	if err := cc.setConnectCA(ctx, c, gen); err != nil {
		return err
	}
	cc.s.logger.Info("connect CA on vault's PKI, logging in with its approle", "root", rootMountPrefix+fmt.Sprint(gen),
		"mount", caLoginMount)
	if oldToken != "" {
		if err := cc.s.write(ctx, "auth/token/revoke", map[string]any{"token": oldToken}); err != nil {
			return fmt.Errorf("revoke the connect CA's former token: %w", err)
		}
		cc.s.logger.Info("the connect CA's former static token is revoked")
	}
	return nil
}

// Connect CA mounts carry a generation (connect-root/g1, g2, …): a rotation moves to the next root mount, which
// Consul creates, cross-signs with the old root and then makes active.
const (
	rootMountPrefix  = "connect-root/g"
	interMountPrefix = "connect-inter/g"
)

// setConnectCA points Consul at generation gen of the Vault PKI mounts, logging in through the CA's AppRole.
// Consul returns once the new root is active (cross-signed by the old one).
func (cc *ConnectCA) setConnectCA(ctx context.Context, c *consul.Client, gen int) error {
	login, err := cc.caAuthMethod()
	if err != nil {
		return err
	}
	ca, err := filepath.Abs(cc.s.cfg.Vault.CACert)
	if err != nil {
		return err
	}
	cfg := &consul.CAConfig{Provider: "vault", Config: map[string]any{
		"Address":             cc.s.cfg.Vault.Addr,
		"AuthMethod":          login,
		"CAFile":              ca,
		"RootPKIPath":         rootMountPrefix + strconv.Itoa(gen) + "/",
		"IntermediatePKIPath": interMountPrefix + strconv.Itoa(gen) + "/",
		"LeafCertTTL":         "72h",
		"PrivateKeyType":      "ec",
		"PrivateKeyBits":      256,
	}}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := c.Connect().CASetConfig(cfg, (&consul.WriteOptions{}).WithContext(wctx)); err != nil {
		return fmt.Errorf("set the connect CA to vault (%s%d): %w", rootMountPrefix, gen, err)
	}
	return nil
}

// caGeneration reads the generation of the root mount in a Vault CA configuration (0 if it is not one of ours).
func caGeneration(cfg *consul.CAConfig) int {
	path, _ := cfg.Config["RootPKIPath"].(string)
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path, rootMountPrefix), "/"))
	if err != nil {
		return 0
	}
	return n
}

// RotateConnectCA moves the Connect CA to a new root in a new Vault mount. Consul cross-signs the new root with
// the old one, so sidecars holding old leaves keep talking while they fetch new ones.
func (cc *ConnectCA) RotateConnectCA(ctx context.Context) (rootID string, err error) {
	err = cc.acl.withConsulWriter(ctx, func(c *consul.Client) error {
		cur, _, err := c.Connect().CAGetConfig(cc.s.q(ctx))
		if err != nil {
			return err
		}
		if cur.Provider != "vault" {
			return fmt.Errorf("the connect CA provider is %q, not vault: run meshctl bootstrap first", cur.Provider)
		}
		if want, err := cc.caAuthMethod(); err != nil || !caLoginCurrent(cur.Config, want) {
			return fmt.Errorf("the connect CA does not log in with its approle yet (%v): run meshctl bootstrap first", err)
		}
		gen := caGeneration(cur) + 1
		if err := cc.setConnectCA(ctx, c, gen); err != nil {
			return err
		}
		roots, _, err := c.Connect().CARoots(cc.s.q(ctx))
		if err != nil {
			return err
		}
		rootID = roots.ActiveRootID
		cc.s.logger.Info("connect CA rotated", "root_mount", fmt.Sprintf("%s%d", rootMountPrefix, gen), "active_root", rootID)
		// Roots two generations back have signed nothing current for a whole rotation: unmount them.
		if gen > 2 {
			path := fmt.Sprintf("%s%d", rootMountPrefix, gen-2)
			cctx, cancel := cc.s.ctx(ctx)
			defer cancel()
			if err := cc.s.vault.Sys().UnmountWithContext(cctx, path); err != nil {
				cc.s.logger.Warn("could not unmount an old connect root", "mount", path, "err", err)
			}
		}
		return nil
	})
	return rootID, err
}
