// Package consulreg registers a service instance with the local Consul agent, with a health check on its
// readiness endpoint and a Connect sidecar, and deregisters it on shutdown.
package consulreg

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// Upstream is a service the instance calls through its sidecar, on a local port.
type Upstream struct {
	Service   string
	LocalPort int
}

// Instance is what gets registered.
type Instance struct {
	ID      string // unique per instance, e.g. "order-1"
	Name    string // the service, e.g. "order"; intentions name it
	Address string // where the sidecar reaches the instance (loopback)
	Port    int
	// CheckURL is the readiness endpoint Consul polls; an HTTPS URL is checked without verifying the
	// certificate, since the check runs on the same host against the instance's own listener.
	CheckURL  string
	Upstreams []Upstream
	Meta      map[string]string
}

// Registrar registers and deregisters one instance.
type Registrar struct {
	client *api.Client
	inst   Instance
	logger *slog.Logger
}

// New returns a Registrar talking to the Consul agent at addr (e.g. http://127.0.0.1:8500).
func New(addr string, inst Instance, logger *slog.Logger) (*Registrar, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Registrar{client: client, inst: inst, logger: logger.With("service_id", inst.ID)}, nil
}

// Client is the underlying Consul API client.
func (r *Registrar) Client() *api.Client { return r.client }

// Registration is what Register sends to the agent.
func (r *Registrar) Registration() *api.AgentServiceRegistration {
	upstreams := make([]api.Upstream, 0, len(r.inst.Upstreams))
	for _, u := range r.inst.Upstreams {
		upstreams = append(upstreams, api.Upstream{
			DestinationType:  api.UpstreamDestTypeService,
			DestinationName:  u.Service,
			LocalBindAddress: "127.0.0.1",
			LocalBindPort:    u.LocalPort,
		})
	}
	return &api.AgentServiceRegistration{
		ID:      r.inst.ID,
		Name:    r.inst.Name,
		Address: r.inst.Address,
		Port:    r.inst.Port,
		Meta:    r.inst.Meta,
		Check: &api.AgentServiceCheck{
			Name:          r.inst.Name + " readiness",
			HTTP:          r.inst.CheckURL,
			TLSSkipVerify: true,
			Interval:      "2s",
			Timeout:       "2s",
			// A crashed instance that never deregistered leaves the catalog by itself.
			DeregisterCriticalServiceAfter: "1m",
		},
		Connect: &api.AgentServiceConnect{
			SidecarService: &api.AgentServiceRegistration{
				Proxy: &api.AgentServiceConnectProxyConfig{
					LocalServiceAddress: r.inst.Address,
					LocalServicePort:    r.inst.Port,
					Upstreams:           upstreams,
				},
			},
		},
	}
}

// Register registers the instance and its sidecar, replacing an earlier registration with the same ID.
func (r *Registrar) Register(ctx context.Context) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(r.Registration(), opts); err != nil {
		return fmt.Errorf("register %s with consul: %w", r.inst.ID, err)
	}
	r.logger.Info("registered with consul", "name", r.inst.Name, "upstreams", len(r.inst.Upstreams))
	return nil
}

// Deregister removes the instance (and with it, its sidecar registration) from the agent.
func (r *Registrar) Deregister(ctx context.Context) error {
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.inst.ID, q); err != nil {
		return fmt.Errorf("deregister %s from consul: %w", r.inst.ID, err)
	}
	r.logger.Info("deregistered from consul")
	return nil
}

// HostPort splits a listen address for registration; an empty or unspecified host becomes 127.0.0.1, where
// the instance's sidecar reaches it.
func HostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// DefaultID names an instance when the operator did not: service name, host name and port.
func DefaultID(name string, port int) string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", name, h, port)
}

// Join registers inst with the agent at addr and returns leave, which deregisters it within a bounded time
// (call it when shutdown starts, before draining).
func Join(ctx context.Context, addr string, inst Instance, logger *slog.Logger) (leave func(), err error) {
	reg, err := New(addr, inst, logger)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := reg.Register(rctx); err != nil {
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Deregister(dctx); err != nil {
			reg.logger.Error("deregister", "err", err)
		}
	}, nil
}
