package consulreg

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit"
)

// serviceToken mints a token with service's identity, as meshctl does for an instance.
func serviceToken(t *testing.T, c *devserver.Consul, service string) *api.ACLToken {
	t.Helper()
	tok, _, err := c.Root.ACL().TokenCreate(&api.ACLToken{ServiceIdentities: []*api.ACLServiceIdentity{{ServiceName: service}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tokenFile(t *testing.T, dir, secret string) string {
	t.Helper()
	path := filepath.Join(dir, "consul-token")
	if err := os.WriteFile(path+".tmp", []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

func registered(c *devserver.Consul, id string) bool {
	svc, _, err := c.Root.Agent().Service(id, nil)
	return err == nil && svc != nil
}

// holds turns a condition into testkit.Eventually's error.
func holds(ok bool) error {
	if ok {
		return nil
	}
	return errors.New("not yet")
}

func instance(file string) Instance {
	return Instance{ID: "order-1", Name: "order", Address: "127.0.0.1", Port: 9, TokenFile: file,
		CheckURL: "http://127.0.0.1:9/health/readyz"}
}

// Join registers the instance and its sidecar with the instance's own token; leave takes both out.
func TestJoinRegistersWithTheInstancesTokenAndLeaves(t *testing.T) {
	c := devserver.StartConsul(t)
	file := tokenFile(t, t.TempDir(), serviceToken(t, c, "order").SecretID)
	run, leave, err := Join(context.Background(), c.Addr, instance(file), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go run()
	if !registered(c, "order-1") || !registered(c, "order-1-sidecar-proxy") {
		t.Fatal("order-1 or its sidecar is not registered")
	}
	leave()
	if registered(c, "order-1") || registered(c, "order-1-sidecar-proxy") {
		t.Error("order-1 or its sidecar is still registered after leave")
	}
}

// A token of another service cannot register order: the identity is the token's.
func TestAnotherServicesTokenIsRefused(t *testing.T) {
	c := devserver.StartConsul(t)
	file := tokenFile(t, t.TempDir(), serviceToken(t, c, "gateway").SecretID)
	reg, err := New(c.Addr, instance(file), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(context.Background()); err == nil {
		t.Error("gateway's token registered order")
	}
}

// A registration the agent lost comes back at the next check, and a new token in the file is used at once.
func TestRunHealsLostRegistrationsAndFollowsTheToken(t *testing.T) {
	c := devserver.StartConsul(t)
	dir := t.TempDir()
	first := serviceToken(t, c, "order")
	file := tokenFile(t, dir, first.SecretID)
	reg, err := New(c.Addr, instance(file), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { reg.Run(ctx, 100*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	if err := c.Root.Agent().ServiceDeregister("order-1"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "order-1 registered again after the agent lost it", func() error {
		return holds(registered(c, "order-1") && registered(c, "order-1-sidecar-proxy"))
	})

	// Rotation: a new token in the file, then the old one deleted. The instance acts with the new one: it
	// keeps its registration through a loss after the old token is gone.
	second := serviceToken(t, c, "order")
	tokenFile(t, dir, second.SecretID)
	testkit.Eventually(t, 5*time.Second, "registered with the new token", func() error {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return holds(reg.registeredWith == second.SecretID)
	})
	// The agent's registration names the new token's accessor: what a rotation waits for before it deletes
	// the old token.
	svc, _, err := c.Root.Agent().Service("order-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Meta[TokenAccessorMeta]; got != second.AccessorID {
		t.Fatalf("registration meta %s = %q, want the new token's accessor %s", TokenAccessorMeta, got, second.AccessorID)
	}
	if _, err := c.Root.ACL().TokenDelete(first.AccessorID, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Root.Agent().ServiceDeregister("order-1"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "order-1 registered again with the new token", func() error { return holds(registered(c, "order-1")) })
}
