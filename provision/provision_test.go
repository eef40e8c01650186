package provision

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	consul "github.com/hashicorp/consul/api"
)

// The intentions operators edit decode as `consul config write` would: default deny, gateway → order,
// order → nats, and both services → jaeger allow.
func TestIntentionFilesDecode(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "consul", "intentions-*.hcl"))
	if err != nil || len(files) < 2 {
		t.Fatalf("intention files: %v %v", files, err)
	}
	actions := map[string]string{}
	for _, f := range files {
		entry, err := readConfigEntry(f)
		if err != nil {
			t.Fatal(err)
		}
		si, ok := entry.(*consul.ServiceIntentionsConfigEntry)
		if !ok {
			t.Fatalf("%s: %T, want service-intentions", f, entry)
		}
		for _, src := range si.Sources {
			actions[src.Name+"→"+si.Name] = string(src.Action)
		}
	}
	want := map[string]string{"*→*": "deny", "gateway→order": "allow", "order→nats": "allow",
		"gateway→jaeger": "allow", "order→jaeger": "allow"}
	if !maps.Equal(actions, want) {
		t.Errorf("intentions %v; want exactly %v", actions, want)
	}
}

func TestCAGeneration(t *testing.T) {
	for path, want := range map[string]int{"connect-root/g1/": 1, "connect-root/g12/": 12, "pki/": 0, "": 0} {
		if got := caGeneration(&consul.CAConfig{Config: map[string]any{"RootPKIPath": path}}); got != want {
			t.Errorf("caGeneration(%q) = %d; want %d", path, got, want)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := writeSecretFile(path, ""); err == nil {
		t.Error("an empty secret was written")
	}
	if err := writeSecretFile(path, "s3cr3t"); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v; want 0600", info.Mode(), err)
	}
	if v, err := readSecretFile(path); err != nil || v != "s3cr3t" {
		t.Errorf("read back %q %v", v, err)
	}
}

func TestInstanceValid(t *testing.T) {
	for _, tt := range []struct {
		inst Instance
		ok   bool
	}{
		{Instance{Service: "order", ID: "order-1", Dir: "/x"}, true},
		{Instance{Service: "gateway", ID: "gateway-1", Dir: "/x"}, true},
		{Instance{Service: "intruder", ID: "i-1", Dir: "/x"}, false},
		{Instance{Service: "order", Dir: "/x"}, false},
		{Instance{Service: "nats", ID: "nats-1", Dir: "/x", Consul: true}, true},
		{Instance{Service: "nats", ID: "nats-1", Dir: "/x"}, false}, // a Consul identity only: nothing to deliver
	} {
		if err := tt.inst.valid(); (err == nil) != tt.ok {
			t.Errorf("%+v: %v", tt.inst, err)
		}
	}
}
