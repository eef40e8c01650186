package provision

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pizzajoint/mesh/internal/natstest"
	"github.com/pizzajoint/mesh/platform/natsauth"
)

func newNATSUsers(t *testing.T) (*NATSUsers, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := NATSConfig{UsersDir: filepath.Join(dir, "users"), AuthFile: filepath.Join(dir, "auth.conf"), Replicas: 1}
	return NewNATSUsers(cfg, "..", slog.New(slog.NewTextHandler(io.Discard, nil))), dir
}

// authConfOf is the server's authorization as users last rendered it.
func authConfOf(t *testing.T, users *NATSUsers) string {
	t.Helper()
	b, err := os.ReadFile(users.cfg.AuthFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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
	srv := natstest.Start(t, authConfOf(t, users))
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
	srv := natstest.Start(t, authConfOf(t, users))
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

// A key rotation: during the overlap the server admits the previous key and the new one; the retirement waits
// until no connection uses the previous key, then only the new one is admitted. A retirement whose wait runs
// out drops the key anyway and the server closes the connection still on it. Seen red with RetireKey not
// waiting ("retired while a connection still used the previous key").
func TestNATSKeyRotation(t *testing.T) {
	users, dir := newNATSUsers(t)
	users.cfg.RetireWait = 20 * time.Second
	inst := Instance{Service: "order", ID: "order-1", Dir: filepath.Join(dir, "creds", "order-1")}
	if _, err := users.DeliverKey(inst, "order"); err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(inst.Dir, NATSSeedFile)
	keep := func(name string) string { // a copy of the seed the instance holds now
		b, err := os.ReadFile(seedFile)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	authConf := func() string { return authConfOf(t, users) }
	srv := natstest.StartMonitored(t, authConf())
	users.cfg.Monitor = srv.MonitorURL()
	connected := func(seed string) *nats.Conn {
		key, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(srv.URL(), key, nats.NoReconnect())
		if err != nil {
			t.Fatalf("connect before the rotation: %v", err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	admits := func(phase string, want map[string]bool) {
		t.Helper()
		for name, admitted := range want {
			err := connectWith(t, srv.URL(), filepath.Join(dir, name))
			if admitted && err != nil {
				t.Errorf("%s: key %s refused: %v", phase, name, err)
			}
			if !admitted && err == nil {
				t.Errorf("%s: key %s admitted", phase, name)
			}
		}
	}

	first := keep("first.nk")
	onFirst := connected(first)
	changed, err := users.RotateKey(inst, "order")
	if err != nil || !changed {
		t.Fatalf("rotate: changed %v, %v", changed, err)
	}
	second := keep("second.nk")
	srv.Reconfigure(authConf())
	admits("overlap", map[string]bool{"first.nk": true, "second.nk": true})

	retired := make(chan error, 1)
	go func() {
		changed, err := users.RetireKey(context.Background(), inst)
		if err == nil && !changed {
			err = errors.New("retired, but the authorization did not change")
		}
		retired <- err
	}()
	select {
	case err := <-retired:
		t.Fatalf("retired while a connection still used the previous key (%v)", err)
	case <-time.After(2 * time.Second):
	}
	if !onFirst.IsConnected() {
		t.Fatal("the connection on the previous key was cut during the overlap")
	}
	onFirst.Close() // the instance has moved to the new key
	if err := <-retired; err != nil {
		t.Fatalf("retire: %v", err)
	}
	srv.Reconfigure(authConf())
	admits("after the retirement", map[string]bool{"first.nk": false, "second.nk": true})
	if strings.Contains(authConf(), mustPublicKey(t, first)) {
		t.Error("the retired key is still in the authorization")
	}

	// A second rotation whose instance never leaves the previous key: the wait runs out, the key is dropped and
	// the server closes the connection.
	onSecond := connected(second)
	if _, err := users.RotateKey(inst, "order"); err != nil {
		t.Fatal(err)
	}
	keep("third.nk")
	srv.Reconfigure(authConf())
	users.cfg.RetireWait = time.Second
	if changed, err := users.RetireKey(context.Background(), inst); err != nil || !changed {
		t.Fatalf("retire after the wait ran out: changed %v, %v", changed, err)
	}
	srv.Reconfigure(authConf())
	deadline := time.Now().Add(10 * time.Second)
	for !onSecond.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !onSecond.IsClosed() {
		t.Error("the server kept a connection whose key was dropped")
	}
	admits("after the second retirement", map[string]bool{"first.nk": false, "second.nk": false, "third.nk": true})
	if changed, err := users.RetireKey(context.Background(), inst); err != nil || changed {
		t.Errorf("a retirement with nothing to retire: changed %v, %v", changed, err)
	}
}

// A rotation refuses a link planted at the seed's name before it changes anything, and an instance with no
// identity has nothing to rotate.
func TestNATSKeyRotationRefuses(t *testing.T) {
	for _, tt := range []struct {
		name  string
		plant bool // a link at the seed's name after the delivery
		fresh bool // no delivery first
	}{
		{name: "a planted link", plant: true},
		{name: "an instance with no identity", fresh: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			users, dir := newNATSUsers(t)
			inst := Instance{Service: "order", ID: "order-1", Dir: filepath.Join(dir, "creds", "order-1")}
			if !tt.fresh {
				if _, err := users.DeliverKey(inst, "order"); err != nil {
					t.Fatal(err)
				}
			}
			target := filepath.Join(dir, "target")
			if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.plant {
				seed := filepath.Join(inst.Dir, NATSSeedFile)
				if err := os.Remove(seed); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, seed); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := users.registered(inst.ID)
			if _, err := users.RotateKey(inst, "order"); err == nil {
				t.Error("rotated")
			}
			if b, _ := os.ReadFile(target); string(b) != "untouched" {
				t.Errorf("the link's target was written: %q", b)
			}
			if after, _ := users.registered(inst.ID); after != before {
				t.Error("the registry changed")
			}
			if _, err := os.Stat(filepath.Join(users.cfg.UsersDir, inst.ID+previousKeyExt)); err == nil {
				t.Error("a previous key was recorded")
			}
		})
	}
}

func mustPublicKey(t *testing.T, seedFile string) string {
	t.Helper()
	b, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := natsauth.PublicKeyOf(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// On a cluster each server sees only its own connections: `nats-key unused` waits on one server and changes
// nothing, and the retire that follows runs with no monitoring URL, so it drops the key at once. Seen red with
// WaitUnused returning at once ("unused returned while a connection still used the previous key").
func TestNATSKeyUnusedOnEachServerThenRetire(t *testing.T) {
	users, dir := newNATSUsers(t)
	users.cfg.RetireWait = 20 * time.Second
	inst := Instance{Service: "order", ID: "order-1", Dir: filepath.Join(dir, "creds", "order-1")}
	if _, err := users.DeliverKey(inst, "order"); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(inst.Dir, NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "first.nk")
	if err := os.WriteFile(first, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	authConf := func() string { return authConfOf(t, users) }
	srv := natstest.StartMonitored(t, authConf())
	users.cfg.Monitor = srv.MonitorURL()
	key, err := nats.NkeyOptionFromSeed(first)
	if err != nil {
		t.Fatal(err)
	}
	onFirst, err := nats.Connect(srv.URL(), key, nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer onFirst.Close()
	if _, err := users.RotateKey(inst, "order"); err != nil {
		t.Fatal(err)
	}
	srv.Reconfigure(authConf())

	unused := make(chan error, 1)
	go func() { unused <- users.WaitUnused(context.Background(), inst) }()
	select {
	case err := <-unused:
		t.Fatalf("unused returned while a connection still used the previous key (%v)", err)
	case <-time.After(2 * time.Second):
	}
	onFirst.Close()
	if err := <-unused; err != nil {
		t.Fatalf("unused: %v", err)
	}
	old := mustPublicKey(t, first)
	if !strings.Contains(authConf(), old) {
		t.Fatal("nats-key unused dropped the previous key")
	}
	users.cfg.Monitor = "" // the retire's own server may not be the one the instance used
	if changed, err := users.RetireKey(context.Background(), inst); err != nil || !changed {
		t.Fatalf("retire with no monitoring URL: changed %v, %v", changed, err)
	}
	if strings.Contains(authConf(), old) {
		t.Error("the retired key is still in the authorization")
	}
}
