package consulagent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit"
)

// The questions against a real agent (ACLs on, default deny), over its HTTP address and over a unix socket as
// the local stack's agent listens.
func TestAgainstAConsulAgent(t *testing.T) {
	c := devserver.StartConsul(t)
	reg := &api.AgentServiceRegistration{ID: "order-1", Name: "order", Address: "127.0.0.1", Port: 9,
		Check:   &api.AgentServiceCheck{CheckID: "order-1-ttl", TTL: "1h"},
		Connect: &api.AgentServiceConnect{SidecarService: &api.AgentServiceRegistration{}}}
	if err := c.Root.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	tok, _, err := c.Root.ACL().TokenCreate(&api.ACLToken{ServiceIdentities: []*api.ACLServiceIdentity{{ServiceName: "order"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sidecar, _, err := c.Root.Agent().Service("order-1-sidecar-proxy", nil)
	if err != nil {
		t.Fatal(err)
	}

	// The same agent behind a unix socket, as stack.sh's agent listens (addresses { http = "unix://…" }).
	sock := filepath.Join(t.TempDir(), "consul.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(c.Addr)
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	for _, addr := range []string{c.Addr, "unix://" + sock} {
		ask := func(token string) *Agent {
			a, err := New(Config{Addr: addr, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		ctx := context.Background()
		t.Run(addr, func(t *testing.T) {
			if leader, err := ask("").Leader(ctx); err != nil || leader == "" {
				t.Errorf("Leader = %q, %v; want the leader's address", leader, err)
			}
			if port, err := ask(tok.SecretID).SidecarPort(ctx, "order-1"); err != nil || port != sidecar.Port {
				t.Errorf("SidecarPort(order-1) = %d, %v; want %d", port, err, sidecar.Port)
			}
			if _, err := ask(tok.SecretID).SidecarPort(ctx, "order-2"); !errors.Is(err, ErrNotRegistered) {
				t.Errorf("SidecarPort(order-2) = %v; want ErrNotRegistered", err)
			}
			// Without a token the agent refuses (default deny): a refusal, not an answer to wait out. (Any
			// service identity may read every service, so another service's token is not refused.)
			if _, err := ask("").SidecarPort(ctx, "order-1"); err == nil || errors.Is(err, ErrNotRegistered) {
				t.Errorf("SidecarPort without a token = %v; want a refusal", err)
			}
			if err := ask("").Passing(ctx, "order-1"); err == nil || errors.Is(err, ErrNotPassing) {
				t.Errorf("Passing without a token = %v; want a refusal", err)
			}
			// The sidecar's TCP check has nothing to reach on its port: critical.
			if err := ask(tok.SecretID).Passing(ctx, "order-1-sidecar-proxy"); !errors.Is(err, ErrNotPassing) {
				t.Errorf("Passing(order-1-sidecar-proxy) = %v; want ErrNotPassing", err)
			}
			if err := ask(tok.SecretID).Passing(ctx, "order-9"); !errors.Is(err, ErrNotRegistered) {
				t.Errorf("Passing(order-9) = %v; want ErrNotRegistered", err)
			}
		})
	}

	ctx := context.Background()
	a, err := New(Config{Addr: c.Addr, Token: tok.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		status string
		want   error
	}{
		{"critical", api.HealthCritical, ErrNotPassing},
		{"warning", api.HealthWarning, ErrNotPassing},
		{"passing", api.HealthPassing, nil},
	} {
		if err := c.Root.Agent().UpdateTTL("order-1-ttl", "", tc.status); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 10*time.Second, "order-1 "+tc.name, func() error {
			if err := a.Passing(ctx, "order-1"); !errors.Is(err, tc.want) {
				return err
			}
			return nil
		})
	}
}
