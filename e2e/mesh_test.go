package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/internal/devserver"
	"github.com/pizzajoint/mesh/internal/testkit"
	"github.com/pizzajoint/mesh/provision"
)

// consul is a client with a Consul operator token (leased from Vault as the runbook does): it reads the
// catalog and writes intentions, and can neither register services nor get their certificates.
func consul(t *testing.T) *api.Client {
	t.Helper()
	operatorOnce.Do(func() {
		operatorToken, operatorErr = stack.Meshctl("token", "consul-operator")
		remember(operatorToken)
	})
	if operatorErr != nil {
		t.Fatal(operatorErr)
	}
	return consulAs(t, stack.ConsulAddr, operatorToken)
}

var (
	operatorOnce  sync.Once
	operatorToken string
	operatorErr   error
)

// consulAs is a client of the agent at addr acting with token ("" is anonymous); HTTPS addresses are verified
// against the project's CA.
func consulAs(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token, cfg.TokenFile = addr, token, ""
	cfg.TLSConfig.CAFile = stack.CACert
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// instanceToken reads a service instance's own Consul token from its credentials folder (the tests run as root).
func instanceToken(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stack.Dir, "credentials", id, "consul-token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// mintServiceToken creates a Consul token with service's identity (as meshctl does for an instance), with a
// provisioner token leased from Vault on the operator's token; it is deleted when the test ends.
func mintServiceToken(t *testing.T, service string) string {
	t.Helper()
	prov := provisioner(t)
	var tok *api.ACLToken
	eventually(t, 10*time.Second, func() (err error) {
		tok, _, err = prov.ACL().TokenCreate(&api.ACLToken{Description: "test " + service,
			ServiceIdentities: []*api.ACLServiceIdentity{{ServiceName: service}}}, nil)
		return err
	})
	t.Cleanup(func() { _, _ = prov.ACL().TokenDelete(tok.AccessorID, nil) })
	return remember(tok.SecretID)
}

// provisioner is a client with meshctl's provisioning rights (tokens, intentions), leased from Vault for the
// test with a root token generated from the unseal key, as meshctl's provisioning runs do (the operator's token
// cannot lease it).
func provisioner(t *testing.T) *api.Client {
	t.Helper()
	v := vaultRoot(t)
	sec, err := v.Logical().Read("consul/creds/provisioner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Sys().Revoke(sec.LeaseID) })
	c := consulAs(t, stack.ConsulAddr, remember(sec.Data["token"].(string)))
	eventually(t, 10*time.Second, func() error { _, _, err := c.ACL().TokenReadSelf(nil); return err })
	return c
}

// vaultRoot is a Vault client with a root token generated for the test from the unseal key (root is trusted;
// the tests run as root), revoked when the test ends.
func vaultRoot(t *testing.T) *vault.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := vaultAs(t, "")
	token, err := provision.GenerateRootFromFile(ctx, c, filepath.Join(stack.Dir, "vault", "unseal-key"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(remember(token)) // the logs are scanned for it after the tests
	t.Cleanup(func() {
		if err := c.Auth().Token().RevokeSelf(""); err != nil {
			t.Errorf("revoke the test's root token: %v", err)
		}
	})
	return c
}

// vaultOperator is a Vault client with the operator's token, verifying Vault's certificate.
func vaultOperator(t *testing.T) *vault.Client {
	t.Helper()
	token, err := stack.OperatorToken()
	if err != nil {
		t.Fatal(err)
	}
	return vaultAs(t, token)
}

func vaultAs(t *testing.T, token string) *vault.Client {
	t.Helper()
	return (&devserver.Vault{Addr: stack.VaultAddr, CACert: stack.CACert}).Client(t, token)
}

// eventually is testkit's polling every quarter second, as these tests have always asked the stack: many of
// their conditions place orders or read logs, which cost the stack more than a unit test's condition.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	testkit.EventuallyEvery(t, within, 250*time.Millisecond, "the stack", f)
}

func TestOrderCrossesBothSidecars(t *testing.T) {
	status, p, err := placeOrder(t, "", orderBody("Grace"))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /pizza: %d %v", status, err)
	}
	var name string
	if err := stack.Observer.QueryRow(`SELECT customer_name FROM orders WHERE id = ?`, p.ID).Scan(&name); err != nil || name != "Grace" {
		t.Fatalf("order %s in MySQL: %q, %v", p.ID, name, err)
	}

	// The gateway's upstream port belongs to the gateway's sidecar process, not to order.
	sidecarPid, err := stack.Pid("sidecar-gateway-1")
	if err != nil {
		t.Fatal(err)
	}
	if owner := listenerOwner(t, stack.Ports.OrderUpstream); owner != sidecarPid {
		t.Fatalf("upstream port %d is owned by pid %d, want the gateway sidecar %d", stack.Ports.OrderUpstream, owner, sidecarPid)
	}
	// And an order replica's sidecar holds a connection to that replica's port: requests come in over mTLS
	// through it (which replica the gateway's sidecar picked is its choice).
	connected := false
	for n, id := range []string{"order-1", "order-2"} {
		pid, err := stack.Pid("sidecar-" + id)
		if err != nil {
			t.Fatal(err)
		}
		connected = connected || connectedTo(t, pid, stack.Ports.Order+n)
	}
	if !connected {
		t.Errorf("no order sidecar has a connection to its order replica")
	}
}

// Intentions decide who may open a connection to order: the gateway's identity is let in until the
// gateway→order intention says deny, and again once it says allow. Consul's built-in proxy checks intentions
// when a connection opens, so each attempt is a new connection (established ones live on until closed).
func TestIntentionDecidesTheRoute(t *testing.T) {
	out, err := stack.Tool("consul", nil, "intention", "check", "gateway", "order")
	if err != nil || !strings.Contains(out, "Allowed") {
		t.Fatalf("consul intention check gateway order: %q %v", out, err)
	}
	if out, err := stack.Tool("consul", nil, "intention", "check", "intruder", "order"); err == nil || !strings.Contains(out, "Denied") {
		t.Fatalf("consul intention check intruder order: %q %v; want Denied (default deny)", out, err)
	}

	c := consul(t)
	entry, _, err := c.ConfigEntries().Get(api.ServiceIntentions, "order", nil)
	if err != nil {
		t.Fatal(err)
	}
	allowed := entry.(*api.ServiceIntentionsConfigEntry)
	denied := *allowed
	denied.Sources = []*api.SourceIntention{{Name: "gateway", Action: api.IntentionActionDeny}}
	set := func(e *api.ServiceIntentionsConfigEntry) {
		t.Helper()
		e.ModifyIndex = 0
		if _, _, err := c.ConfigEntries().Set(e, nil); err != nil {
			t.Fatal(err)
		}
	}
	asGateway := connectCert(t, instanceToken(t, "gateway-1"), "gateway")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sidecarPublicPort(t, "order-1")))
	newConnection := func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, asGateway)
		if err != nil {
			return err
		}
		defer conn.Close()
		return httpOver(conn)
	}

	if err := newConnection(); err != nil {
		t.Fatalf("gateway identity before the change: %v; want an answer", err)
	}
	set(&denied)
	defer set(allowed)
	eventually(t, 20*time.Second, func() error {
		if newConnection() == nil {
			return fmt.Errorf("gateway identity still answered with gateway→order denied")
		}
		return nil
	})
	set(allowed)
	eventually(t, 20*time.Second, newConnection)
}

func TestCatalogShowsTheMeshHealthy(t *testing.T) {
	eventually(t, 30*time.Second, func() error { return meshPassing(consul(t)) })
}

// meshPassing says why the mesh is not whole yet: every service and sidecar in the catalog, every instance passing.
func meshPassing(c *api.Client) error {
	for _, svc := range []string{"gateway", "order", "nats", "gateway-sidecar-proxy", "order-sidecar-proxy", "nats-sidecar-proxy"} {
		entries, _, err := c.Health().Service(svc, "", false, nil)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return fmt.Errorf("%s is not in the catalog", svc)
		}
		for _, e := range entries {
			if st := e.Checks.AggregatedStatus(); st != api.HealthPassing {
				return fmt.Errorf("%s (%s) is %s", svc, e.Service.ID, st)
			}
		}
	}
	return nil
}

func sidecarPublicPort(t *testing.T, serviceID string) int {
	t.Helper()
	svcs, err := consul(t).Agent().ServicesWithFilter(fmt.Sprintf(`Kind == "connect-proxy" and Proxy.DestinationServiceID == %q`, serviceID))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		return s.Port
	}
	t.Fatalf("no sidecar registered for %s", serviceID)
	return 0
}

// connectCert returns a TLS config presenting a Connect leaf certificate for service (asked for with token,
// which must hold service's identity), trusting the Connect CA.
func connectCert(t *testing.T, token, service string) *tls.Config {
	t.Helper()
	c := consulAs(t, stack.ConsulAddr, token)
	leaf, _, err := c.Agent().ConnectCALeaf(service, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	roots, _, err := c.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots.Roots {
		pool.AppendCertsFromPEM([]byte(r.RootCertPEM))
	}
	// The sidecar's certificate names a SPIFFE URI, not a host name; verify the chain only.
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				if certs[i], err = x509.ParseCertificate(r); err != nil {
					return err
				}
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}
}

// httpOver sends GET /menu over conn and reports whether an HTTP answer came back.
func httpOver(conn net.Conn) error {
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprint(conn, "GET /menu HTTP/1.1\r\nHost: order\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func TestOrderSidecarRefusesStrangers(t *testing.T) {
	port := sidecarPublicPort(t, "order-1")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dialTLS := func(cfg *tls.Config) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		return httpOver(conn)
	}

	// Positive control: the gateway's own identity gets through. Without it the refusals prove nothing.
	gatewayToken := instanceToken(t, "gateway-1")
	if err := dialTLS(connectCert(t, gatewayToken, "gateway")); err != nil {
		t.Fatalf("with gateway's Connect certificate: %v; want an answer", err)
	}

	t.Run("plain TCP", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return // refused outright is a refusal too
		}
		defer conn.Close()
		if err := httpOver(conn); err == nil {
			t.Error("plain HTTP to the order sidecar got an answer")
		}
	})
	t.Run("TLS without a client certificate", func(t *testing.T) {
		cfg := connectCert(t, gatewayToken, "gateway")
		cfg.Certificates = nil
		if err := dialTLS(cfg); err == nil {
			t.Error("TLS without a client certificate got an answer")
		}
	})
	t.Run("valid Connect certificate without an intention", func(t *testing.T) {
		token := mintServiceToken(t, "intruder")
		c := consulAs(t, stack.ConsulAddr, token)
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "intruder-1", Name: "intruder", Port: 1}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Agent().ServiceDeregister("intruder-1") }()
		if err := dialTLS(connectCert(t, token, "intruder")); err == nil {
			t.Error("intruder's Connect certificate got an answer from order")
		}
	})
}

func TestOrderListensOnLoopbackOnly(t *testing.T) {
	found := false
	for _, l := range listeners(t) {
		if l.port != stack.Ports.Order {
			continue
		}
		found = true
		if !l.ip.IsLoopback() {
			t.Errorf("order's port %d is bound on %s", l.port, l.ip)
		}
	}
	if !found {
		t.Fatalf("order's port %d is not listening at all", stack.Ports.Order)
	}
}

// ---- /proc/net helpers: which process listens where, and who is connected to whom ----

type socket struct {
	ip                     net.IP
	port, remotePort       int
	listening, established bool
	inode                  string
}

func listeners(t *testing.T) []socket {
	var out []socket
	for _, s := range sockets(t) {
		if s.listening {
			out = append(out, s)
		}
	}
	return out
}

func sockets(t *testing.T) []socket {
	t.Helper()
	var out []socket
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			ip, port := parseAddr(f[1])
			_, rport := parseAddr(f[2])
			out = append(out, socket{ip: ip, port: port, remotePort: rport,
				listening: f[3] == "0A", established: f[3] == "01", inode: f[9]})
		}
	}
	return out
}

// parseAddr reads /proc/net/tcp's "0100007F:2382" (little-endian words) form.
func parseAddr(s string) (net.IP, int) {
	h, p, _ := strings.Cut(s, ":")
	raw, _ := hex.DecodeString(h)
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, _ := strconv.ParseInt(p, 16, 32)
	return net.IP(raw), int(port)
}

// listenerOwner returns the pid whose socket listens on port, or 0.
func listenerOwner(t *testing.T, port int) int {
	t.Helper()
	for _, l := range listeners(t) {
		if l.port != port {
			continue
		}
		procs, _ := os.ReadDir("/proc")
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			if socketInodes(pid)[l.inode] {
				return pid
			}
		}
	}
	return 0
}

// socketInodes returns the inodes of pid's sockets (empty if the process is gone or not ours to read).
func socketInodes(pid int) map[string]bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	return inodes
}

// connectedTo reports whether process pid holds an established connection to 127.0.0.1:port.
func connectedTo(t *testing.T, pid, port int) bool {
	t.Helper()
	mine := socketInodes(pid)
	for _, s := range sockets(t) {
		if s.established && s.remotePort == port && mine[s.inode] {
			return true
		}
	}
	return false
}
