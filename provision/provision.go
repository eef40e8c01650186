// Package provision sets up and operates the control plane of Pizza Joint mesh on vault/api and consul/api: it
// initialises and unseals Vault, bootstraps Consul's ACL system through Vault's Consul secrets engine, writes
// policies, roles and intentions, makes Vault's PKI the Connect CA, delivers each service instance its
// credentials, and carries out the runbook's rotations. cmd/meshctl wires it; the local stack, Compose and
// Kubernetes all run that one program.
//
// A Session holds one run's Vault and Consul clients, the Config and which Vault credential the run holds
// (operator token, first bootstrap's root token, or the run's provisioning token: Authenticate,
// BeginProvisioning). Each job a meshctl command names is a unit that holds the Session, and only the other units
// it calls:
//   - VaultSetup: open, unseal and bootstrap Vault (policies, mounts, AppRoles, database, transit), hand the first
//     root token over to the operator token; its Consul steps go through ConsulACL and ConnectCA.
//   - ConsulACL: Consul's ACL system through Vault's Consul engine, policies, the agent token, intentions, and the
//     short-lived Consul tokens the other units write with.
//   - ConnectCA: Vault's PKI as the Connect CA, its AppRole login, its rotation.
//   - Identities: each instance's and client agent's credentials, delivered and replaced.
//   - Rotations: the runbook's rotations on Vault, staff tokens, Consul tokens for people.
//   - KubernetesAuth: Vault's Kubernetes auth method and its roles.
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
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Config is where the control plane is and how it is shaped. Every field has a MESHCTL_* variable (cmd/meshctl).
type Config struct {
	Vault struct {
		Addr string `conf:"default:https://127.0.0.1:8200"`
		// Nodes lists each node of a Vault cluster (space-separated URLs): init and unseal go to every node, and
		// a run's other calls to the active one. Empty: the one server at Addr.
		Nodes  string `conf:"help:each node of a Vault cluster, space-separated URLs (empty: Addr alone)"`
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
		// Servers lists a cluster's servers as "node=https://address" pairs (space-separated): each gets its own
		// node token through its own address, since an agent's token is set on that agent alone. Empty: the one
		// agent at Addr, named Node.
		Servers string `conf:"help:the servers as node=address pairs, space-separated (empty: Node at Addr)"`
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
		// Promote is the replica that promote-db makes the primary.
		Promote PromoteConfig
		// Replica is the replica that setup makes follow the primary (Compose).
		Replica ReplicaConfig
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
