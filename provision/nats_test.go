package provision

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pizzajoint/mesh/internal/natstest"
)

func newNATSUsers(t *testing.T) (*NATSUsers, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := NATSConfig{UsersDir: filepath.Join(dir, "users"), AuthFile: filepath.Join(dir, "auth.conf"), Replicas: 1}
	return NewNATSUsers(cfg, "..", slog.New(slog.NewTextHandler(io.Discard, nil))), dir
}

func connectWith(t *testing.T, url, seedFile string) error {
	t.Helper()
	key, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, key, nats.Timeout(3*time.Second))
	if err == nil {
		nc.Close()
	}
	return err
}

// An instance's NATS identity: a seed in its folder (0600), its public key in the server's authorization; a
// second delivery keeps it; the server admits it and meshctl's identity, which keeps the stream. An identity
// whose registry entry is gone is refused once the authorization is rendered again. Seen red with DeliverKey
// making a new key on every delivery ("changed on a second delivery").
func TestNATSIdentities(t *testing.T) {
	users, dir := newNATSUsers(t)
	inst := Instance{Service: "order", ID: "order-1", Dir: filepath.Join(dir, "creds", "order-1")}
	changed, err := users.DeliverKey(inst, "order")
	if err != nil || !changed {
		t.Fatalf("first delivery: changed %v, %v", changed, err)
	}
	seedFile := filepath.Join(inst.Dir, NATSSeedFile)
	first, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(seedFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("seed file mode %v, want 0600", fi.Mode().Perm())
	}
	if changed, err := users.DeliverKey(inst, "order"); err != nil || changed {
		t.Errorf("second delivery: changed %v, %v; want the same identity kept", changed, err)
	}
	if again, _ := os.ReadFile(seedFile); string(again) != string(first) {
		t.Error("second delivery replaced the seed")
	}
	provisioner, err := users.ProvisionerSeed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := users.Render(); err != nil {
		t.Fatal(err)
	}
	auth, err := os.ReadFile(users.cfg.AuthFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, string(auth))
	if err := connectWith(t, srv.URL(), seedFile); err != nil {
		t.Errorf("order-1 refused: %v", err)
	}
	users.cfg.URL = srv.URL()
	if err := users.EnsureStream(context.Background(), 5*time.Second); err != nil {
		t.Errorf("meshctl could not keep the stream: %v", err)
	}
	if line, err := users.StreamState(context.Background(), 5*time.Second); err != nil || !strings.Contains(line, "ORDERS: 0 messages") {
		t.Errorf("stream state %q, %v", line, err)
	}
	if err := connectWith(t, srv.URL(), provisioner); err != nil {
		t.Errorf("meshctl refused: %v", err)
	}

	// Another instance's key that the registry does not hold: refused.
	stranger, _ := newNATSUsers(t)
	other := Instance{Service: "order", ID: "order-9", Dir: filepath.Join(dir, "creds", "order-9")}
	if _, err := stranger.DeliverKey(other, "order"); err != nil {
		t.Fatal(err)
	}
	if err := connectWith(t, srv.URL(), filepath.Join(other.Dir, NATSSeedFile)); err == nil {
		t.Error("a key the server was never given connected")
	}
}

// A link the instance's account planted at the seed's name is refused, and nothing is written through it.
func TestNATSKeyRefusesAPlantedLink(t *testing.T) {
	users, dir := newNATSUsers(t)
	inst := Instance{Service: "order", ID: "order-1", Dir: filepath.Join(dir, "creds", "order-1")}
	if err := os.MkdirAll(inst.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(inst.Dir, NATSSeedFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := users.DeliverKey(inst, "order"); err == nil {
		t.Error("delivered through a planted link")
	}
	if b, _ := os.ReadFile(target); string(b) != "untouched" {
		t.Errorf("the link's target was written: %q", b)
	}
}

func TestNATSRegistryNames(t *testing.T) {
	for _, id := range []string{"", "meshctl", "../x", ".hidden", "a b"} {
		if validRegistryName(id) == nil {
			t.Errorf("instance ID %q accepted", id)
		}
	}
	if err := validRegistryName("order-2"); err != nil {
		t.Error(err)
	}
}

// nats-stream on a cluster that is still starting: with a Wait it keeps trying until the server answers, without
// one it fails at once. Seen red with EnsureStream trying once ("server came back … but nats-stream failed").
func TestNATSStreamWaitsForTheServer(t *testing.T) {
	users, _ := newNATSUsers(t)
	if _, err := users.ProvisionerSeed(); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Render(); err != nil {
		t.Fatal(err)
	}
	auth, err := os.ReadFile(users.cfg.AuthFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, string(auth))
	users.cfg.URL = srv.URL()
	srv.Stop()
	if err := users.EnsureStream(context.Background(), 2*time.Second); err == nil {
		t.Fatal("nats-stream with no Wait succeeded while the server was down")
	}
	users.cfg.Wait = 30 * time.Second
	done := make(chan error, 1)
	go func() { done <- users.EnsureStream(context.Background(), 2*time.Second) }()
	time.Sleep(2 * time.Second)
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatalf("server came back within the wait, but nats-stream failed: %v", err)
	}
	if line, err := users.StreamState(context.Background(), 5*time.Second); err != nil || !strings.Contains(line, "ORDERS") {
		t.Errorf("stream state %q, %v", line, err)
	}
}
