// Package consulreg registers a service instance with the local Consul agent, with a health check on its
// readiness endpoint and a Connect sidecar, keeps the registration in place while the instance runs (an agent
// that restarted or lost it gets it again within seconds), and deregisters it on shutdown.
//
// The instance acts with its own Consul token, read from a file the provisioner delivers (service identity:
// register this service and its sidecar, discover others). The file is read again before every call, so a
// rotated token is picked up without a restart.
package consulreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
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
	// TokenFile holds the instance's Consul token; empty means no token (an agent without ACLs).
	TokenFile string
	// AdvertiseNode registers the instance and its sidecar at the agent's node address instead of Address: in
	// a pod (Compose), the agent's node is the pod, so other pods reach the sidecar's public listener at the
	// pod's address, while the sidecar still reaches the instance on the pod's loopback (Address).
	AdvertiseNode bool
}

// Registrar registers and deregisters one instance, and keeps it registered.
type Registrar struct {
	client *api.Client
	inst   Instance
	logger *slog.Logger
	mu     sync.Mutex
	// registeredWith is the token of the last successful registration.
	registeredWith string
}

// New returns a Registrar talking to the Consul agent at addr (e.g. http://127.0.0.1:8500).
func New(addr string, inst Instance, logger *slog.Logger) (*Registrar, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	// Never act with a token from the environment: the instance's own token file is the only identity.
	cfg.Token, cfg.TokenFile = "", ""
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	return &Registrar{client: client, inst: inst, logger: logger.With("service_id", inst.ID)}, nil
}

// token reads the instance's token file now.
func (r *Registrar) token() (string, error) {
	if r.inst.TokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(r.inst.TokenFile)
	if err != nil {
		return "", fmt.Errorf("consul token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("consul token file %s is empty", r.inst.TokenFile)
	}
	return t, nil
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
	// An empty address means the node's, for the instance and for the sidecar that inherits it.
	advertise := r.inst.Address
	if r.inst.AdvertiseNode {
		advertise = ""
	}
	return &api.AgentServiceRegistration{
		ID:      r.inst.ID,
		Name:    r.inst.Name,
		Address: advertise,
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

// TokenAccessorMeta is the registration's meta key naming the accessor of the token it was registered with: a
// token rotation deletes the old token only once the agent holds the instance under the new one (the accessor
// identifies a token and grants nothing; its secret never leaves the token file).
const TokenAccessorMeta = "token-accessor"

// Register registers the instance and its sidecar, replacing an earlier registration with the same ID.
func (r *Registrar) Register(ctx context.Context) error {
	token, err := r.token()
	if err != nil {
		return err
	}
	reg := r.Registration()
	withAccessor := true
	if token != "" {
		// Any token may read itself.
		// Any token may read itself. Without an answer (the servers away) the instance registers anyway: only a
		// rotation's retirement step waits for the meta, and it refuses rather than deletes blind.
		self, _, err := r.client.ACL().TokenReadSelf((&api.QueryOptions{Token: token}).WithContext(ctx))
		if err != nil {
			r.logger.Warn("could not read this instance's consul token's accessor; registering without it, "+
				"and again at the next check", "err", err)
			withAccessor = false
		} else {
			reg.Meta = maps.Clone(reg.Meta)
			if reg.Meta == nil {
				reg.Meta = map[string]string{}
			}
			reg.Meta[TokenAccessorMeta] = self.AccessorID
		}
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true, Token: token}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("register %s with consul: %w", r.inst.ID, err)
	}
	if withAccessor {
		r.mu.Lock()
		r.registeredWith = token
		r.mu.Unlock()
	}
	r.logger.Info("registered with consul", "name", r.inst.Name, "upstreams", len(r.inst.Upstreams))
	return nil
}

// Run keeps the registration in place until ctx ends: every interval it asks the agent for the instance and
// registers again when the agent no longer has it (an agent restarted without its data, or a lost
// registration) or when the token file holds a new token (a rotation). The sidecar's registration is nested in
// the instance's, so it comes back with it.
func (r *Registrar) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.heal(ctx, interval)
		switch {
		case err != nil && !failing:
			r.logger.Warn("consul registration check failed; retrying", "err", err, "every", interval)
			failing = true
		case err == nil && failing:
			r.logger.Info("consul registration check works again")
			failing = false
		}
	}
}

func (r *Registrar) heal(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max(timeout, 2*time.Second))
	defer cancel()
	token, err := r.token()
	if err != nil {
		return err
	}
	r.mu.Lock()
	changed := token != r.registeredWith
	r.mu.Unlock()
	if changed {
		r.logger.Info("consul token changed; registering again with the new one")
		return r.Register(ctx)
	}
	q := (&api.QueryOptions{Token: token}).WithContext(ctx)
	svc, _, err := r.client.Agent().Service(r.inst.ID, q)
	var se api.StatusError
	switch {
	case errors.As(err, &se) && se.Code == 404, err == nil && svc == nil:
		r.logger.Warn("consul agent lost this instance's registration; registering again")
		return r.Register(ctx)
	case err != nil:
		return err
	}
	return nil
}

// Deregister removes the instance (and with it, its sidecar registration) from the agent.
func (r *Registrar) Deregister(ctx context.Context) error {
	token, err := r.token()
	if err != nil {
		return err
	}
	q := (&api.QueryOptions{Token: token}).WithContext(ctx)
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

// UpstreamAt is service as an upstream of the instance's sidecar, listening on the port of rawURL: the local
// address the instance calls it at (http://127.0.0.1:9191 for order, nats://127.0.0.1:9292 for NATS).
func UpstreamAt(service, rawURL string) (Upstream, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Upstream{}, err
	}
	_, port, err := HostPort(u.Host)
	if err == nil && (port <= 0 || port > 65535) {
		err = fmt.Errorf("port %d out of range", port)
	}
	if err != nil {
		return Upstream{}, fmt.Errorf("%q must name the sidecar upstream's port: %w", rawURL, err)
	}
	return Upstream{Service: service, LocalPort: port}, nil
}

// DefaultID names an instance when the operator did not: service name, host name and port.
func DefaultID(name string, port int) string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", name, h, port)
}

// HealInterval is how often a joined instance checks that the agent still has it.
const HealInterval = 2 * time.Second

// Join registers inst with the agent at addr, keeps it registered until ctx ends (run keeps it; the caller runs
// and joins it), and returns leave, which stops keeping it and deregisters it within a bounded time (call it
// when shutdown starts, before draining).
func Join(ctx context.Context, addr string, inst Instance, logger *slog.Logger) (run func(), leave func(), err error) {
	reg, err := New(addr, inst, logger)
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := reg.Register(rctx); err != nil {
		return nil, nil, err
	}
	keep, stopKeeping := context.WithCancel(ctx)
	done := make(chan struct{})
	run = func() { defer close(done); reg.Run(keep, HealInterval) }
	// leave may be called more than once (at shutdown, and deferred for an early error): it acts once.
	leave = sync.OnceFunc(func() {
		stopKeeping()
		<-done // no re-registration may race the deregistration
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Deregister(dctx); err != nil {
			reg.logger.Error("deregister", "err", err)
		}
	})
	return run, leave, nil
}
