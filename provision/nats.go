package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pizzajoint/mesh/order/eventstream"
	"github.com/pizzajoint/mesh/platform/natsauth"
	"github.com/pizzajoint/mesh/platform/servicedir"
)

// NATSConfig is where the NATS identities are kept. Every field has a MESHCTL_NATS_* variable.
type NATSConfig struct {
	// UsersDir is root's registry of the identities NATS admits: one file per identity, "<role> <public key>",
	// and the provisioner's own seed. Only public keys leave it.
	UsersDir string `conf:"default:.state/nats/users"`
	// AuthFile is the server's authorization (its config includes it), rendered from UsersDir: public keys and
	// permissions only, so it holds no secret.
	AuthFile string `conf:"default:.state/nats/auth.conf"`
	// URL is where meshctl reaches NATS to keep the stream's configuration.
	URL string `conf:"default:nats://127.0.0.1:4222"`
	// Replicas is the stream's replication: 1 on one server, 3 on a cluster of three.
	Replicas int `conf:"default:1"`
	// Wait is how long nats-stream keeps trying while the servers are not yet answering (a new cluster elects
	// its JetStream leader after its servers are up); 0 tries once.
	Wait time.Duration `conf:"default:0s"`
	// Monitor is the server's monitoring endpoint (root's): a key rotation reads its connections there.
	Monitor string `conf:"default:http://127.0.0.1:8222"`
	// RetireWait bounds how long `nats-key retire` waits for the instance to leave its previous key before it
	// drops that key anyway (the server then closes what still uses it).
	RetireWait time.Duration `conf:"default:30s"`
}

// NATSSeedFile is the instance's NATS nkey seed in its credentials folder.
const NATSSeedFile = "nats-seed"

const provisionerSeed = "provisioner.seed"

// Registry entries: an identity's key ("<role> <public key>"), and during a rotation the key it replaces, admitted
// until the instance has left it.
const (
	currentKeyExt  = ".user"
	previousKeyExt = ".previous"
)

// NATSUsers gives service instances and meshctl their NATS identities (nkey users: the instance holds its seed,
// the server its public key) and renders the server's authorization from them. It needs neither Vault nor
// Consul: a seed is made where it is delivered and never leaves the instance's folder.
type NATSUsers struct {
	cfg     NATSConfig
	permDir string
	logger  *slog.Logger
}

// NewNATSUsers returns the NATS identities kept as cfg says, with the permissions in repo/nats/permissions.
func NewNATSUsers(cfg NATSConfig, repo string, logger *slog.Logger) *NATSUsers {
	return &NATSUsers{cfg: cfg, permDir: filepath.Join(repo, "nats", "permissions"), logger: logger}
}

// DeliverKey gives the instance its NATS identity with role's permissions: the seed already in its folder when
// the registry still admits it (a restart keeps its identity), else a new key pair. It then renders the
// server's authorization; changed says whether the server must reload it.
func (n *NATSUsers) DeliverKey(inst Instance, role string) (changed bool, err error) {
	if err := validRegistryName(inst.ID); err != nil {
		return false, err
	}
	d, err := n.openSeedDir(inst)
	if err != nil {
		return false, err
	}
	defer d.Close()
	registered, _ := n.registered(inst.ID)
	seed, err := d.ReadFile(NATSSeedFile)
	if err == nil {
		if pub, perr := natsauth.PublicKeyOf(seed); perr == nil && registered == role+" "+pub {
			return n.Render()
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	seed, pub, err := natsauth.NewUser()
	if err != nil {
		return false, err
	}
	if err := d.WriteFile(NATSSeedFile, seed, 0o600); err != nil {
		return false, err
	}
	if err := n.register(inst.ID, role, pub); err != nil {
		return false, err
	}
	n.logger.Info("NATS identity delivered", "instance", inst.ID, "role", role, "public_key", pub)
	return n.Render()
}

// openSeedDir opens the instance's credentials folder to read or write its seed, refusing a link or anything
// else planted at the seed's name.
func (n *NATSUsers) openSeedDir(inst Instance) (*servicedir.Dir, error) {
	d, err := openServiceDir(inst.Dir, inst.Owner, n.logger)
	if err != nil {
		return nil, err
	}
	if err := checkNames(d, NATSSeedFile); err != nil {
		d.Close()
		return nil, fmt.Errorf("NATS key of %s: %w", inst.ID, err)
	}
	return d, nil
}

// ProvisionerSeed returns the file of meshctl's own NATS identity, made and registered when missing.
func (n *NATSUsers) ProvisionerSeed() (string, error) {
	file := filepath.Join(n.cfg.UsersDir, provisionerSeed)
	if err := os.MkdirAll(n.cfg.UsersDir, 0o700); err != nil {
		return "", err
	}
	seed, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		var pub string
		if seed, pub, err = natsauth.NewUser(); err != nil {
			return "", err
		}
		if err := writeSecretFile(file, string(seed)); err != nil {
			return "", err
		}
		return file, n.register("meshctl", "provisioner", pub)
	}
	if err != nil {
		return "", err
	}
	pub, err := natsauth.PublicKeyOf(seed)
	if err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return file, n.register("meshctl", "provisioner", pub)
}

// Render writes the server's authorization from the registry; changed says whether it differs from before.
func (n *NATSUsers) Render() (changed bool, err error) {
	entries, err := os.ReadDir(n.cfg.UsersDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	var users []natsauth.User
	admitted := map[string]bool{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if ext != currentKeyExt && ext != previousKeyExt {
			continue
		}
		line, err := n.entry(strings.TrimSuffix(e.Name(), ext), ext)
		if err != nil {
			return false, err
		}
		role, pub, _ := strings.Cut(line, " ")
		if admitted[pub] { // a rotation stopped between its two registry writes
			continue
		}
		admitted[pub] = true
		users = append(users, natsauth.User{Role: role, PublicKey: pub})
	}
	text, err := natsauth.Accounts(n.permDir, users)
	if err != nil {
		return false, err
	}
	text = "# Rendered by meshctl from " + n.cfg.UsersDir + ": public keys and permissions only.\n" + text
	old, err := os.ReadFile(n.cfg.AuthFile)
	if err == nil && string(old) == text {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(n.cfg.AuthFile), 0o755); err != nil {
		return false, err
	}
	// World-readable on purpose: the NATS server's account reads it, and it holds no secret.
	tmp := n.cfg.AuthFile + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return false, err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, n.cfg.AuthFile)
}

// EnsureStream creates the event stream, or brings its configuration up to date, as meshctl's identity. It
// tries again every second for up to the configured Wait.
func (n *NATSUsers) EnsureStream(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(n.cfg.Wait)
	for {
		err := n.withJetStream(ctx, timeout, func(ctx context.Context, js jetstream.JetStream) error {
			return eventstream.Ensure(ctx, js, n.cfg.Replicas)
		})
		if err == nil {
			n.logger.Info("event stream configured", "stream", eventstream.Name, "replicas", n.cfg.Replicas)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		n.logger.Warn("event stream not configured yet; trying again", "stream", eventstream.Name, "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// StreamState describes the event stream in one line for operators: its messages, its last sequence, its open
// consumers (one per open SSE stream), its replicas and, on a cluster, its leader and any replica not current.
func (n *NATSUsers) StreamState(ctx context.Context, timeout time.Duration) (string, error) {
	var line string
	err := n.withJetStream(ctx, timeout, func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, eventstream.Name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		st := info.State
		line = fmt.Sprintf("%s: %d messages (%d bytes), last sequence %d, %d consumers, %d replicas", eventstream.Name,
			st.Msgs, st.Bytes, st.LastSeq, st.Consumers, info.Config.Replicas)
		if c := info.Cluster; c != nil && c.Leader != "" {
			line += ", leader " + c.Leader
			for _, r := range c.Replicas {
				if !r.Current || r.Offline {
					line += fmt.Sprintf(", %s behind", r.Name)
				}
			}
		}
		return nil
	})
	return line, err
}

// withJetStream runs fn on a JetStream connection as meshctl's identity, within timeout.
func (n *NATSUsers) withJetStream(ctx context.Context, timeout time.Duration, fn func(context.Context, jetstream.JetStream) error) error {
	seed, err := n.ProvisionerSeed()
	if err != nil {
		return err
	}
	key, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(n.cfg.URL, key, nats.Name("meshctl"), nats.Timeout(timeout))
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", n.cfg.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(ctx, js)
}

func (n *NATSUsers) registered(name string) (string, error) { return n.entry(name, currentKeyExt) }

func (n *NATSUsers) entry(name, ext string) (string, error) {
	b, err := os.ReadFile(filepath.Join(n.cfg.UsersDir, name+ext))
	return strings.TrimSpace(string(b)), err
}

func (n *NATSUsers) register(name, role, pub string) error {
	return n.writeEntry(name, currentKeyExt, role+" "+pub)
}

func (n *NATSUsers) writeEntry(name, ext, line string) error {
	if err := os.MkdirAll(n.cfg.UsersDir, 0o700); err != nil {
		return err
	}
	return writeSecretFile(filepath.Join(n.cfg.UsersDir, name+ext), line)
}

// validRegistryName keeps an instance ID a plain file name in the registry.
func validRegistryName(id string) error {
	if id == "" || id == "meshctl" || strings.ContainsAny(id, "/\\ \n") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("instance ID %q cannot name a NATS identity", id)
	}
	return nil
}
