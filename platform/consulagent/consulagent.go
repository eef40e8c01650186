// Package consulagent asks a Consul agent what the local stack waits on while it starts processes: does the
// agent know a leader, on which port did an instance's Connect sidecar register, do an instance's checks pass.
// scripts/stack.sh asks through `meshctl consul`, so the shell speaks no Consul API of its own.
//
// Plain HTTP, not consul/api: that client falls back to CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE and
// CONSUL_CACERT from the environment when a setting is empty, and each question here must carry exactly the
// token it is handed (an instance's own), or none.
package consulagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Answers that may change while the caller waits, as opposed to a broken address, token or agent.
var (
	ErrNoLeader      = errors.New("the agent knows no leader")
	ErrNotRegistered = errors.New("not registered with the agent")
	ErrNotPassing    = errors.New("checks not passing")
)

// DefaultTimeout bounds each request, connection included, when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Config says where the agent (or one of meshctl's fronts of it) listens and how to ask it.
type Config struct {
	Addr    string        // unix:///path, http://host:port or https://host:port
	CAFile  string        // https: the CA that signed the listener's certificate
	Token   string        // the ACL token sent with every request; empty: none
	Timeout time.Duration // for each request (DefaultTimeout when zero)
}

// Agent asks one agent; its zero value is not usable, see New.
type Agent struct {
	base   url.URL
	client *http.Client
	token  string
}

// New checks cfg and returns an Agent; it does not dial.
func New(cfg Config) (*Agent, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	var base url.URL
	if path, ok := strings.CutPrefix(cfg.Addr, "unix://"); ok && path != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		base = url.URL{Scheme: "http", Host: "consul"}
	} else {
		u, err := url.Parse(cfg.Addr)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("consul agent address %q: want unix:///path, http://host:port or https://host:port", cfg.Addr)
		}
		base = url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &Agent{base: base, token: cfg.Token, client: &http.Client{
		Timeout:   cfg.Timeout,
		Transport: tr,
		// The agent never redirects these paths; a front that did would be answering for someone else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Leader returns the address of the cluster's leader as the agent sees it, or ErrNoLeader.
func (a *Agent) Leader(ctx context.Context) (string, error) {
	var leader string
	if err := a.get(ctx, "/v1/status/leader", &leader); err != nil {
		return "", err
	}
	if leader == "" {
		return "", ErrNoLeader
	}
	return leader, nil
}

// SidecarPort returns the public port of the Connect proxy registered on the agent for instance id, or
// ErrNotRegistered while there is none. The token must be allowed to read the instance's service.
func (a *Agent) SidecarPort(ctx context.Context, id string) (int, error) {
	if id == "" {
		return 0, errors.New("no instance ID")
	}
	var svc struct{ Port int }
	err := a.get(ctx, "/v1/agent/service/"+url.PathEscape(id+"-sidecar-proxy"), &svc)
	if status(err) == http.StatusNotFound {
		return 0, fmt.Errorf("%s-sidecar-proxy: %w", id, ErrNotRegistered)
	}
	if err != nil {
		return 0, err
	}
	if svc.Port <= 0 || svc.Port > 65535 {
		return 0, fmt.Errorf("%s-sidecar-proxy: registered without a port (%d)", id, svc.Port)
	}
	return svc.Port, nil
}

// Passing returns nil when every check of service instance id on the agent passes (id may be a sidecar's,
// order-1-sidecar-proxy); ErrNotPassing while any is warning or critical, ErrNotRegistered while the agent
// does not know id. The token must be allowed to read the instance's service.
func (a *Agent) Passing(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("no instance ID")
	}
	err := a.get(ctx, "/v1/agent/health/service/id/"+url.PathEscape(id), nil)
	switch status(err) {
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", id, ErrNotRegistered)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable: // warning, critical
		return fmt.Errorf("%s: %w (%w)", id, ErrNotPassing, err)
	}
	return err
}

// statusError is an answer other than 200.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// status is the HTTP status of a statusError, or 0.
func status(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

// get GETs path and decodes a 200's body into out (nil: the status is the whole answer).
func (a *Agent) get(ctx context.Context, path string, out any) error {
	u := a.base
	u.RawPath = path
	u.Path, _ = url.PathUnescape(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("X-Consul-Token", a.token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{code: resp.StatusCode,
			msg: fmt.Sprintf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
