// Command meshctl provisions and operates the control plane of Pizza Joint mesh (Vault and Consul). The local
// stack (scripts/stack.sh), Docker Compose and Kubernetes run it; the Makefile's runbook targets call it.
//
//	meshctl bootstrap                 initialise/unseal Vault, then configure Vault and Consul (idempotent)
//	meshctl unseal                    unseal Vault with the key in the state folder (MESHCTL_UNSEAL_EVERY: keep
//	                                  it unsealed, for a Vault whose container restarts sealed)
//	meshctl deliver                   credentials for one instance (MESHCTL_INSTANCE_*): role_id, wrapped secret_id, Consul token
//	meshctl setup                     bootstrap, then agent tokens and deliveries from a plan (MESHCTL_SETUP_*), in
//	                                  one run: Compose's one-shot bootstrap container, whose image has no shell
//	meshctl kubernetes-auth           Vault's Kubernetes auth for a cluster: enable it, point it at the cluster's
//	                                  API (MESHCTL_KUBERNETES_*), write the roles in vault/kubernetes (idempotent)
//	                                  (this, bootstrap after the first and rotate connect-ca use a root token made
//	                                  for the run from the unseal key and revoked at its end; the rest the
//	                                  operator token)
//	meshctl probe [-cacert F] URL     exit 0 if URL answers 2xx within a timeout (images' health checks)
//	meshctl pause                     do nothing until stopped: owns a Compose pod's network namespace
//	meshctl gossip-key [-owner U:G] FILE...  one gossip encryption key for a stack's Consul agents (kept if present)
//	meshctl install [-owner U:G] [-mode M] DIR SRC NAME...  copy root's files into a service's folder without
//	                                  following the links it may hold (platform/servicedir; the shell's cp/mv)
//	meshctl host-filter apply|remove|show TABLE [PORT...]  the local stack's owner-matched packet filter (root)
//	meshctl consul leader | sidecar-port ID | passing ID  what the local stack waits on, asked of the Consul
//	                                  agent (-addr, default CONSUL_HTTP_ADDR); exit 0 when so; the last two read
//	                                  the instance's token on stdin (platform/consulagent)
//	meshctl vault answers             exit 0 once Vault's listener answers at all (-addr, -cacert; default
//	                                  VAULT_ADDR, VAULT_CACERT): started, sealed or not
//	meshctl promote-db                the database replica becomes the primary, for good (MESHCTL_DB_PROMOTE_*):
//	                                  replication stopped after its relay log is applied, writes allowed, Vault's
//	                                  database connection and the primary's address file moved to it
//	meshctl rotate WHAT               db-creds | db-root | transit-key | connect-ca | logins
//	                                  | secret-id | consul-token | consul-token-retire   (these three: MESHCTL_INSTANCE_*)
//	meshctl token staff NAME          a staff bearer token (printed once; Vault keeps its hash)
//	meshctl token consul-ui           a read-only Consul token to log in to the UI (leased from Vault, 8 h)
//	meshctl token consul-operator     a Consul token for the runbook's consul CLI (leased from Vault, 1 h)
//	meshctl register                  keep one instance of a service run from another's binary (NATS) registered
//	                                  with Consul, with its sidecar and its own token (MESHCTL_REGISTER_*), until stopped
//	meshctl nats-auth                 meshctl's NATS identity, then the server's authorization (public keys only)
//	meshctl nats-key                  the NATS identity of one instance (MESHCTL_INSTANCE_*): its nkey seed in its
//	                                  folder, its public key in the authorization ("reload" on stdout: changed)
//	meshctl nats-key rotate|retire    a new key for the instance beside its previous one; then the previous one
//	                                  dropped once no connection uses it (MESHCTL_NATS_MONITOR, _RETIRE_WAIT)
//	meshctl nats-key unused           wait until no connection on one server uses the previous key (a cluster's)
//	meshctl nats-stream               the event stream (JetStream ORDERS) created or brought up to date
//	meshctl serve-front               a front of the Consul agent's API (MESHCTL_FRONT_*): a service user's
//	                                  unix socket, or the operators' HTTPS UI; see platform/consulfront for why
//	meshctl cluster status            the raft peers of Consul's servers and Vault's nodes: leader, health
//	meshctl cluster remove-peer consul|vault NODE  a dead server out of its cluster's raft, before its
//	                                  replacement joins (Vault's: a provisioning run, as bootstrap)
//	meshctl operator-token            break glass: read a root token (from `vault operator generate-root`) on
//	                                  stdin, write a new operator token, revoke the root token
//
// Tokens go to stdout only; everything else is logged as JSON on stderr. Every setting has a MESHCTL_* variable;
// see `meshctl --help`.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ardanlabs/conf/v3"
	"github.com/pizzajoint/mesh/platform/applog"
	"github.com/pizzajoint/mesh/platform/consulfront"
	"github.com/pizzajoint/mesh/platform/probe"
	"github.com/pizzajoint/mesh/provision"
)

type config struct {
	conf.Version
	Args conf.Args
	Log  struct {
		Level string `conf:"default:info"`
	}
	provision.Config
	// Instance names the service instance that deliver and the per-instance rotations act on.
	Instance struct {
		Service string `conf:"help:order or order-migrate or gateway"`
		ID      string `conf:"help:the instance's Consul service ID, e.g. order-1"`
		Dir     string `conf:"help:the instance's credentials folder"`
		Consul  bool   `conf:"default:false,help:the instance registers with Consul and gets a Consul token"`
		Owner   string `conf:"help:numeric uid:gid that the instance's folder and files belong to (default: the folder's owner)"`
	}
	// Register is the instance `meshctl register` keeps registered with Consul.
	Register Registration
	// NATS is where the NATS identities are kept and how the event stream is shaped (nats-* commands).
	NATS  provision.NATSConfig
	Front consulfront.Config
	// UnsealEvery makes `meshctl unseal` keep Vault unsealed, checking this often, until stopped.
	UnsealEvery time.Duration `conf:"help:keep Vault unsealed: check this often (0: unseal once and exit)"`
	// Setup is the plan of `meshctl setup` (see provision.ParseInstances for the format).
	Setup struct {
		Instances string `conf:"help:instances to deliver credentials to after the bootstrap"`
		Agents    string `conf:"help:Consul client agents to give a node token after the bootstrap"`
	}
}

func main() {
	// The two commands that need no configuration, for containers: health checks and a pod's namespace owner.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "probe":
			os.Exit(probe.Main(os.Args[2:], os.Stderr))
		case "pause":
			pause()
			return
		case "host-filter":
			if err := hostFilter(os.Args[2:], os.Stdout, os.Stderr); err != nil {
				fmt.Fprintln(os.Stderr, "meshctl:", err)
				os.Exit(1)
			}
			return
		case "consul", "vault":
			var err error
			if os.Args[1] == "consul" {
				err = consulCmd(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
			} else {
				err = vaultCmd(context.Background(), os.Args[2:], os.Stderr)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "meshctl:", err)
				os.Exit(1)
			}
			return
		case "gossip-key", "install":
			cmd := gossipKey
			if os.Args[1] == "install" {
				cmd = install
			}
			if err := cmd(os.Args[2:], os.Stderr); err != nil {
				fmt.Fprintln(os.Stderr, "meshctl:", err)
				os.Exit(1)
			}
			return
		}
	}
	if err := run(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "meshctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) error {
	var cfg config
	cfg.Version.Desc = "Pizza Joint mesh control plane"
	help, err := conf.Parse("MESHCTL", &cfg)
	if errors.Is(err, conf.ErrHelpWanted) {
		fmt.Fprintln(stderr, help)
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger, err := applog.New(stderr, "meshctl", cfg.Log.Level)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	inst := provision.Instance{Service: cfg.Instance.Service, ID: cfg.Instance.ID, Dir: cfg.Instance.Dir, Consul: cfg.Instance.Consul,
		Owner: cfg.Instance.Owner}
	// The commands that need no Vault (they run as service accounts too, with no Vault settings).
	switch cfg.Args.Num(0) {
	case "register":
		return register(ctx, cfg.Consul.Addr, cfg.Register, logger)
	case "nats-auth", "nats-key", "nats-stream":
		return natsCmd(ctx, cfg, inst, stdout, logger)
	}
	// One session (clients, config, the run's Vault credential) and the units on it; each command below uses the
	// unit its job names.
	s, err := provision.NewSession(cfg.Config, logger)
	if err != nil {
		return err
	}
	acl := provision.NewConsulACL(s)
	ca := provision.NewConnectCA(s, acl)
	vaultSetup := provision.NewVaultSetup(s, acl, ca)
	identities := provision.NewIdentities(s, acl)
	rotations := provision.NewRotations(s)
	kubeAuth := provision.NewKubernetesAuth(s)
	clusters := provision.NewClusters(s, acl)

	switch cmd := cfg.Args.Num(0); cmd {
	case "bootstrap", "setup":
		fresh, err := vaultSetup.OpenVault(ctx)
		if err != nil {
			return err
		}
		if !fresh {
			// Policies, auth methods and mounts: a root token for this run, never the operator's at rest.
			end, err := s.BeginProvisioning(ctx)
			if err != nil {
				return err
			}
			defer end()
		}
		if err := vaultSetup.Bootstrap(ctx); err != nil {
			return err
		}
		if cmd == "setup" {
			return setup(ctx, identities, provision.NewNATSUsers(cfg.NATS, cfg.Repo, logger), cfg.Setup.Instances, cfg.Setup.Agents)
		}
		return nil
	case "unseal":
		if cfg.UnsealEvery > 0 {
			return vaultSetup.KeepUnsealed(ctx, cfg.UnsealEvery)
		}
		return vaultSetup.Unseal(ctx)
	case "serve-front":
		return consulfront.Serve(ctx, cfg.Front, cfg.Consul.Addr, logger)
	case "operator-token":
		root, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if root = strings.TrimSpace(root); root == "" {
			return errors.New("operator-token reads a root token on stdin (from `vault operator generate-root`)")
		}
		return vaultSetup.ReplaceOperatorToken(ctx, root)
	case "kubernetes-auth", "promote-db", "rotate", "deliver", "token", "cluster":
		if provisions(cfg.Args) {
			end, err := s.BeginProvisioning(ctx)
			if err != nil {
				return err
			}
			defer end()
		} else if err := s.Authenticate(ctx); err != nil {
			return err
		}
	case "":
		return errors.New("no command; see meshctl --help")
	default:
		return fmt.Errorf("unknown command %q; see meshctl --help", cmd)
	}

	switch cfg.Args.Num(0) {
	case "promote-db":
		return provision.NewDBPromotion(s).Promote(ctx)
	case "deliver":
		return identities.Deliver(ctx, inst)
	case "kubernetes-auth":
		return kubeAuth.Configure(ctx)
	case "rotate":
		return rotate(ctx, rotations, ca, identities, cfg.Args.Num(1), inst)
	case "cluster":
		return cluster(ctx, clusters, cfg.Args.Num(1), cfg.Args.Num(2), cfg.Args.Num(3), stdout, logger)
	default: // token
		return token(ctx, rotations, cfg.Args.Num(1), cfg.Args.Num(2), stdout, logger)
	}
}

// provisions says whether a command changes Vault's configuration (auth methods, mounts, the database
// connection), which takes a short-lived root token for the run; every other command runs on the operator's or
// the service's own token.
func provisions(args conf.Args) bool {
	switch args.Num(0) {
	case "kubernetes-auth", "promote-db":
		return true
	case "rotate":
		// A CA rotation mounts the next PKI generation and unmounts an old one.
		return args.Num(1) == "connect-ca"
	case "cluster":
		return args.Num(1) == "remove-peer" && args.Num(2) == "vault"
	}
	return false
}

// rotate runs one rotation: the CA's on the Connect CA, an instance's credentials on Identities, the rest on
// Rotations.
func rotate(ctx context.Context, r *provision.Rotations, ca *provision.ConnectCA, ids *provision.Identities,
	what string, inst provision.Instance) error {
	switch what {
	case "db-creds":
		return r.RotateDBCreds(ctx)
	case "db-root":
		return r.RotateDBRoot(ctx)
	case "transit-key":
		_, err := r.RotateTransitKey(ctx)
		return err
	case "connect-ca":
		_, err := ca.RotateConnectCA(ctx)
		return err
	case "logins":
		return r.RevokeServiceLogins(ctx)
	case "secret-id":
		return ids.DeliverSecretID(ctx, inst)
	case "consul-token":
		return ids.RotateConsulToken(ctx, inst)
	case "consul-token-retire":
		return ids.RetireConsulToken(ctx, inst)
	default:
		return fmt.Errorf("unknown rotation %q (db-creds, db-root, transit-key, connect-ca, logins, secret-id, "+
			"consul-token, consul-token-retire)", what)
	}
}

// cluster shows the control plane's raft clusters, or takes a dead server out of one.
func cluster(ctx context.Context, cl *provision.Clusters, what, name, node string, stdout io.Writer, logger *slog.Logger) error {
	switch what {
	case "status":
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		return provision.WriteStatus(stdout, st)
	case "remove-peer":
		if node == "" {
			return errors.New("usage: meshctl cluster remove-peer consul|vault NODE")
		}
		if err := cl.RemovePeer(ctx, name, node); err != nil {
			return err
		}
		logger.Info("raft peer removed; a new server with an empty data folder may join now", "cluster", name, "node", node)
		return nil
	default:
		return fmt.Errorf("unknown cluster command %q (status, remove-peer consul|vault NODE)", what)
	}
}

func token(ctx context.Context, r *provision.Rotations, kind, name string, stdout io.Writer, logger *slog.Logger) error {
	switch kind {
	case "staff":
		t, err := r.StaffToken(ctx, name)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, t)
		return err
	case "consul-ui", "consul-operator":
		role := map[string]string{"consul-ui": "ui-read", "consul-operator": "operator"}[kind]
		t, ttl, err := r.ConsulToken(ctx, role)
		if err != nil {
			return err
		}
		logger.Info("consul token leased from vault", "role", role, "ttl_seconds", ttl)
		_, err = fmt.Fprintln(stdout, t)
		return err
	default:
		return fmt.Errorf("unknown token kind %q (staff NAME, consul-ui, consul-operator)", kind)
	}
}

// setup provisions what the plan lists, after the bootstrap: each client agent's token, then each instance's
// credentials (and its NATS identity, for an instance with a NATS role).
func setup(ctx context.Context, ids *provision.Identities, users *provision.NATSUsers, instances, agents string) error {
	as, err := provision.ParseAgents(agents)
	if err != nil {
		return err
	}
	is, err := provision.ParseInstances(instances)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := ids.DeliverAgentToken(ctx, a); err != nil {
			return err
		}
	}
	// meshctl's own NATS identity is admitted before any server reads the authorization: it creates the stream.
	if slices.ContainsFunc(is, func(i provision.Instance) bool { return i.NATS != "" }) {
		if _, err := users.ProvisionerSeed(); err != nil {
			return err
		}
	}
	for _, inst := range is {
		if err := ids.Deliver(ctx, inst); err != nil {
			return err
		}
		if inst.NATS != "" {
			if _, err := users.DeliverKey(inst, inst.NATS); err != nil {
				return err
			}
		}
	}
	return nil
}

// pause waits for SIGTERM or SIGINT: a pod's first container holds the network namespace that the pod's other
// containers join, so they keep it when any of them restarts.
func pause() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
