package orderdb

import (
	"strings"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/vaultauth"
)

func TestChoose(t *testing.T) {
	config := func(method, roleIDFile, credentialsFile string) Config {
		var c Config
		c.Vault.AuthMethod, c.Vault.RoleIDFile, c.DBCredentialsFile = method, roleIDFile, credentialsFile
		return c
	}
	tests := []struct {
		name    string
		cfg     Config
		want    credentials
		wantErr bool
	}{
		{"approle login: Vault", config(vaultauth.MethodAppRole, "/run/role-id", ""), fromVault, false},
		{"approle by default: Vault", config("", "/run/role-id", ""), fromVault, false},
		{"kubernetes login: Vault", config(vaultauth.MethodKubernetes, "", ""), fromVault, false},
		{"Vault and a file: Vault, the file is ignored", config("", "/run/role-id", "/run/db-creds"), fromVault, false},
		{"a file only: the file", config("", "", "/run/db-creds"), fromFile, false},
		{"a file, approle named but no role_id file: the file", config(vaultauth.MethodAppRole, "", "/run/db-creds"), fromFile, false},
		{"neither: an error", config("", "", ""), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := choose(tt.cfg, "migrate needs DDL credentials")
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Fatalf("choose = %v, %v; want %v, error %t", got, err, tt.want, tt.wantErr)
			}
			// The error names what failed and both ways to fix it.
			if err != nil {
				for _, s := range []string{"migrate needs DDL credentials", "ORDER_VAULT_ROLE_ID_FILE", "ORDER_VAULT_AUTH_METHOD=kubernetes", "ORDER_DB_CREDENTIALS_FILE"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
			}
		})
	}
}

func TestReplicaConfig(t *testing.T) {
	// The primary's address file (a promotion rewrites it) must never move the replica's pool.
	primary := mysqlconn.Config{Addr: "db:3306", AddrFile: "/state/db-primary-addr", Name: "pizza", MaxOpen: 32, DialTimeout: 3 * time.Second,
		ReadTimeout: 10 * time.Second, ConnMaxLifetime: 5 * time.Minute}
	tests := []struct {
		name          string
		addr          string
		queryTimeout  time.Duration
		wantAddr      string
		wantDialLimit time.Duration
	}{
		{"replica queries bound the dial", "replica:3306", time.Second, "replica:3306", time.Second},
		{"a shorter dial timeout is kept", "replica:3306", 10 * time.Second, "replica:3306", 3 * time.Second},
		{"no replica: an unused pool at no address", "", time.Second, "", time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			cfg.DB = primary
			cfg.DBReplica.Addr, cfg.DBReplica.Timeout = tt.addr, tt.queryTimeout
			got := replicaConfig(cfg)
			want := primary
			want.Addr, want.AddrFile, want.DialTimeout = tt.wantAddr, "", tt.wantDialLimit
			if got != want {
				t.Errorf("replicaConfig = %+v; want %+v", got, want)
			}
			if cfg.DB != primary {
				t.Errorf("the primary's config changed to %+v", cfg.DB)
			}
		})
	}
}
