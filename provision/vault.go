package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	vault "github.com/hashicorp/vault/api"
)

// Roles are the AppRoles of the mesh, by the policy their tokens carry (the same name).
var Roles = []string{"order", "order-migrate", "gateway"}

// writePolicies writes vault/policies/*.hcl. The operator policy is written only with a root-policy token (the
// first bootstrap's, or a run's provisioning token): the operator may not widen its own rights.
func (vs *VaultSetup) writePolicies(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(vs.s.cfg.Repo, "vault", "policies", "*.hcl"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no policies under %s/vault/policies (%v)", vs.s.cfg.Repo, err)
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".hcl")
		if name == "operator" && !vs.s.root && !vs.s.admin {
			continue
		}
		rules, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		c, cancel := vs.s.ctx(ctx)
		err = vs.s.vault.Sys().PutPolicyWithContext(c, name, string(rules))
		cancel()
		if err != nil {
			return fmt.Errorf("policy %s: %w", name, err)
		}
		names = append(names, name)
	}
	vs.s.logger.Info("vault policies written", "policies", strings.Join(names, ","))
	return nil
}

func (vs *VaultSetup) enableMounts(ctx context.Context) error {
	c, cancel := vs.s.ctx(ctx)
	defer cancel()
	auths, err := vs.s.vault.Sys().ListAuthWithContext(c)
	if err != nil {
		return err
	}
	if _, ok := auths["approle/"]; !ok {
		if err := vs.s.vault.Sys().EnableAuthWithOptionsWithContext(c, "approle", &vault.EnableAuthOptions{Type: "approle"}); err != nil {
			return err
		}
	}
	mounts, err := vs.s.vault.Sys().ListMountsWithContext(c)
	if err != nil {
		return err
	}
	want := []struct {
		path string
		in   vault.MountInput
	}{
		{"database", vault.MountInput{Type: "database"}},
		{"transit", vault.MountInput{Type: "transit"}},
		// Staff bearer-token hashes for the gateway.
		{"secret", vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}},
		{"consul", vault.MountInput{Type: "consul"}},
	}
	for _, m := range want {
		if _, ok := mounts[m.path+"/"]; ok {
			continue
		}
		if err := vs.s.vault.Sys().MountWithContext(c, m.path, &m.in); err != nil {
			return fmt.Errorf("mount %s: %w", m.path, err)
		}
	}
	audits, err := vs.s.vault.Sys().ListAuditWithContext(c)
	if err != nil {
		return err
	}
	if _, ok := audits["file/"]; !ok {
		if err := vs.s.vault.Sys().EnableAuditWithOptionsWithContext(c, "file", &vault.EnableAuditOptions{
			Type: "file", Options: map[string]string{"file_path": vs.s.cfg.Vault.AuditLog},
		}); err != nil {
			return fmt.Errorf("audit device: %w", err)
		}
	}
	vs.s.logger.Info("vault mounts ready", "auth", "approle", "secrets", "database,transit,secret(kv-v2),consul", "audit", vs.s.cfg.Vault.AuditLog)
	return nil
}

// approleRoles: periodic, loopback-bound tokens carrying only the role's policy; secret_ids that live hours and
// serve a handful of logins. order-migrate's secret_id serves exactly one login.
func (vs *VaultSetup) approleRoles(ctx context.Context) error {
	cidrs, err := resolveCidrs(vs.s.cfg.Approle.Cidrs)
	if err != nil {
		return err
	}
	for _, name := range Roles {
		uses := vs.s.cfg.Approle.SecretUses
		if name == "order-migrate" {
			uses = 1
		}
		data := map[string]any{
			"token_policies":          name,
			"token_no_default_policy": true,
			"token_period":            vs.s.cfg.Approle.TokenPeriod,
			"token_bound_cidrs":       cidrs,
			"secret_id_bound_cidrs":   cidrs,
			"secret_id_ttl":           vs.s.cfg.Approle.SecretTTL,
			"secret_id_num_uses":      uses,
		}
		if err := vs.s.write(ctx, "auth/approle/role/"+name, data); err != nil {
			return err
		}
	}
	vs.s.logger.Info("approle roles ready", "roles", strings.Join(Roles, ","), "cidrs", cidrs, "token_period", vs.s.cfg.Approle.TokenPeriod,
		"secret_id_ttl", vs.s.cfg.Approle.SecretTTL, "secret_id_uses", vs.s.cfg.Approle.SecretUses)
	return nil
}

// database configures Vault's connection to MariaDB with its own admin user. A fresh admin's password goes from
// memory to MariaDB (over root's unix socket) and to Vault, which rotates it at once: nobody ever holds the
// working one.
func (vs *VaultSetup) database(ctx context.Context) error {
	d := vs.s.cfg.DB
	cfg := map[string]any{
		"plugin_name":              "mysql-database-plugin",
		"connection_url":           "{{username}}:{{password}}@tcp(" + d.Addr + ")/",
		"username":                 d.AdminUser,
		"allowed_roles":            "order,order-migrate",
		"root_rotation_statements": fmt.Sprintf("ALTER USER '{{username}}'@'%s' IDENTIFIED BY '{{password}}';", d.AdminHost),
		"max_open_connections":     4,
		"max_connection_lifetime":  "5m",
	}
	grants := vs.adminGrants()
	existing, err := vs.s.read(ctx, "database/config/"+d.Connection)
	if err != nil {
		return err
	}
	if existing != nil {
		if err := vs.rootSQL(ctx, grants); err != nil {
			return err
		}
		// An update merges fields, so the rotated password Vault holds stays in place.
		if err := vs.s.write(ctx, "database/config/"+d.Connection, cfg); err != nil {
			return err
		}
		vs.s.logger.Info("database connection up to date (admin password untouched)", "connection", d.Connection)
	} else {
		password, err := randomHex(32)
		if err != nil {
			return err
		}
		sql := fmt.Sprintf("CREATE USER IF NOT EXISTS '%[1]s'@'%[2]s' IDENTIFIED BY '%[3]s';\n"+
			"ALTER USER '%[1]s'@'%[2]s' IDENTIFIED BY '%[3]s';\n%[4]s", d.AdminUser, d.AdminHost, password, grants)
		if err := vs.rootSQL(ctx, sql); err != nil {
			return err
		}
		cfg["password"] = password
		if err := vs.s.write(ctx, "database/config/"+d.Connection, cfg); err != nil {
			return err
		}
		if err := vs.s.write(ctx, "database/rotate-root/"+d.Connection, nil); err != nil {
			return err
		}
		vs.s.logger.Info("database connection configured; admin password rotated by vault", "connection", d.Connection, "admin", d.AdminUser)
	}
	for _, r := range []struct{ name, creation, ttl, max string }{
		{"order", "order-creation.sql", d.CredsTTL, d.CredsMax},
		{"order-migrate", "order-migrate-creation.sql", d.MigrateTTL, d.MigrateMax},
	} {
		creation, err := os.ReadFile(filepath.Join(vs.s.cfg.Repo, "vault", "database", r.creation))
		if err != nil {
			return err
		}
		revocation, err := os.ReadFile(filepath.Join(vs.s.cfg.Repo, "vault", "database", "revocation.sql"))
		if err != nil {
			return err
		}
		if err := vs.s.write(ctx, "database/roles/"+r.name, map[string]any{
			"db_name": d.Connection, "creation_statements": string(creation), "revocation_statements": string(revocation),
			"default_ttl": r.ttl, "max_ttl": r.max,
		}); err != nil {
			return err
		}
	}
	vs.s.logger.Info("database roles ready", "order", d.CredsTTL+"/"+d.CredsMax, "order-migrate", d.MigrateTTL+"/"+d.MigrateMax)
	return nil
}

// adminGrants: the least Vault's admin needs to create, grant to and drop the roles' users on the schema only.
func (vs *VaultSetup) adminGrants() string {
	d := vs.s.cfg.DB
	return fmt.Sprintf("CREATE DATABASE IF NOT EXISTS `%[1]s` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"+
		"GRANT CREATE USER ON *.* TO '%[2]s'@'%[3]s';\n"+
		"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, REFERENCES ON `%[1]s`.* TO '%[2]s'@'%[3]s' WITH GRANT OPTION;\n",
		d.Name, d.AdminUser, d.AdminHost)
}

// rootSQL runs statements as MariaDB's root over its unix socket, the only way root may log in. The text goes
// on the client's stdin, so a password in it never reaches a command line.
func (vs *VaultSetup) rootSQL(ctx context.Context, statements string) error {
	if vs.s.cfg.DB.Socket == "" {
		return fmt.Errorf("no MariaDB socket configured (MESHCTL_DB_SOCKET): root's unix socket creates Vault's admin")
	}
	ctx, cancel := vs.s.ctx(ctx)
	defer cancel()
	if _, err := exec.LookPath("mariadb"); err != nil {
		// No client here (meshctl's container image holds meshctl alone): the same login through the driver.
		return rootSQLDriver(ctx, vs.s.cfg.DB.Socket, statements)
	}
	cmd := exec.CommandContext(ctx, "mariadb", "--no-defaults", "--socket="+vs.s.cfg.DB.Socket, "--user=root", "--batch")
	cmd.Stdin = strings.NewReader(statements)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mariadb as root: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (vs *VaultSetup) transitKey(ctx context.Context) error {
	path := "transit/keys/" + vs.s.cfg.Transit.Key
	existing, err := vs.s.read(ctx, path)
	if err != nil {
		return err
	}
	if existing == nil {
		if err := vs.s.write(ctx, path, map[string]any{"type": "aes256-gcm96"}); err != nil {
			return err
		}
	}
	vs.s.logger.Info("transit key ready", "key", vs.s.cfg.Transit.Key)
	return nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// resolveCidrs expands "local-networks" into the networks of this host's non-loopback interfaces; any other
// value is passed on as it is.
func resolveCidrs(v string) (string, error) {
	if v != "local-networks" {
		return v, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	nets := localNetworks(addrs)
	if len(nets) == 0 {
		return "", errors.New("local-networks: this host has no non-loopback IPv4 network")
	}
	return strings.Join(nets, ","), nil
}

// localNetworks: the IPv4 networks (not the addresses) of addrs, loopback and link-local left out.
func localNetworks(addrs []net.Addr) []string {
	var nets []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		n := (&net.IPNet{IP: ipn.IP.Mask(ipn.Mask), Mask: ipn.Mask}).String()
		if !slices.Contains(nets, n) {
			nets = append(nets, n)
		}
	}
	return nets
}

// rootSQLDriver logs in as root over the unix socket with the Go driver. MariaDB's unix_socket plugin checks
// the peer's uid and needs nothing from the client, so no password is involved.
func rootSQLDriver(ctx context.Context, socket, statements string) error {
	cfg := rootConfig(socket)
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if _, err := db.ExecContext(ctx, statements); err != nil {
		return fmt.Errorf("mariadb as root over %s: %w", socket, err)
	}
	return nil
}
