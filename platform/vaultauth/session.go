// Package vaultauth keeps a service logged in to Vault.
//
// A Session logs in with the configured method — AppRole (role_id and secret_id from files an operator
// delivers, the secret_id optionally response-wrapped) or Kubernetes (the pod's service-account token) — and
// renews the token with a LifetimeWatcher. It logs in again when the token reaches its max TTL, when a renewal
// fails, and when a user of the token reports that Vault refused it (an operator revoked it). While Vault is
// unreachable it retries with backoff, and recovers by itself when Vault returns.
//
// Users see each token's life as a Login: its Done channel closes when the token is no longer the session's,
// which is when anything made under it (database leases die with their token) must be made again.
package vaultauth

import (
	"context"
	"errors"
	"fmt"
	"github.com/pizzajoint/mesh/platform/tracing"
	"go.opentelemetry.io/otel/attribute"
	"log/slog"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
)

// Session is a service's login to Vault. Run must be running for it to hold a token.
type Session struct {
	cfg    Config
	client *vault.Client
	method method
	logger *slog.Logger

	mu      sync.Mutex
	current *Login        // nil while logged out
	changed chan struct{} // closed (and replaced) whenever current changes
	logins  uint64
}

// Login is one token's life in a Session.
type Login struct {
	seq     uint64
	client  *vault.Client
	done    chan struct{}
	refused chan struct{} // buffered: one report is enough
}

// method is a way to log in: it returns the login's auth response.
type method interface {
	login(ctx context.Context, c *vault.Client) (*vault.Secret, error)
	name() string
}

// New returns a Session for cfg. It does not call Vault; Run logs in.
func New(cfg Config, logger *slog.Logger) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	logger = logger.With("component", "vaultauth")
	var m method
	switch cfg.method() {
	case MethodKubernetes:
		m = &kubernetes{mount: cfg.KubernetesMount, role: cfg.KubernetesRole, tokenFile: cfg.KubernetesTokenFile}
	default:
		m = &appRole{roleIDFile: cfg.RoleIDFile, secretIDFile: cfg.SecretIDFile, wrapped: cfg.SecretIDWrapped,
			role: cfg.Role, client: client, timeout: cfg.Timeout, logger: logger}
	}
	return &Session{cfg: cfg, client: client, method: m, logger: logger, changed: make(chan struct{})}, nil
}

// Client is the Vault client, logged in as the service while a login is live; each new login sets its token, so
// long-lived users (transit) keep using it. Users that must know which token they used take a Login's client.
func (s *Session) Client() *vault.Client { return s.client }

// Timeout bounds each call to Vault (the configured one), for users of the session's clients.
func (s *Session) Timeout() time.Duration { return s.cfg.Timeout }

// Client is a Vault client acting with this login's token only.
func (l *Login) Client() *vault.Client { return l.client }

// Done is closed when this login's token is no longer the session's (max TTL, renewal failed, refused, or Run
// ended).
func (l *Login) Done() <-chan struct{} { return l.done }

// Refuse reports that Vault refused this login's token (403): the session logs in again now instead of at the
// token's next renewal. Reporting a login that already ended does nothing.
func (l *Login) Refuse() {
	select {
	case l.refused <- struct{}{}:
	default:
	}
}

// Current returns the live login (nil while logged out) and a channel closed when that changes.
func (s *Session) Current() (*Login, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.changed
}

// Await returns the live login, waiting for one until ctx ends.
func (s *Session) Await(ctx context.Context) (*Login, error) {
	return s.awaitAfter(ctx, 0)
}

// awaitAfter waits for a live login newer than the seq'th.
func (s *Session) awaitAfter(ctx context.Context, seq uint64) (*Login, error) {
	for {
		l, changed := s.Current()
		if l != nil && l.seq > seq {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not logged in to vault: %w", ctx.Err())
		case <-changed:
		}
	}
}

// Relogin reports that Vault refused refused's token and waits (within ctx) for the login after it.
func (s *Session) Relogin(ctx context.Context, refused *Login) (*Login, error) {
	refused.Refuse()
	return s.awaitAfter(ctx, refused.seq)
}

// TokenRejected reports that Vault refused the token of Client (403), for users that do not hold a Login.
func (s *Session) TokenRejected() {
	if l, _ := s.Current(); l != nil {
		l.Refuse()
	}
}

// WaitLoggedIn blocks until the session holds a live token or ctx ends.
func (s *Session) WaitLoggedIn(ctx context.Context) error {
	_, err := s.Await(ctx)
	return err
}

// LoggedIn reports an error unless the session holds a live token (readiness of a service that needs only that).
func (s *Session) LoggedIn(context.Context) error {
	if l, _ := s.Current(); l == nil {
		return errors.New("not logged in to vault")
	}
	return nil
}

// Revoke gives the token back to Vault, which revokes everything made under it (database leases: their users
// are dropped). Call it after Run has returned, on shutdown.
func (s *Session) Revoke(ctx context.Context) error {
	if s.client.Token() == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		return fmt.Errorf("revoke vault token: %w", err)
	}
	s.client.ClearToken()
	s.logger.Info("vault token revoked")
	return nil
}

// IsForbidden reports whether err is Vault refusing the request's token.
func IsForbidden(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

// Run logs in and keeps a token until ctx is done. It returns only then.
func (s *Session) Run(ctx context.Context) {
	if w, ok := s.method.(interface{ watch(context.Context) }); ok {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { w.watch(ctx) })
	}
	backoff := NewBackoff(500*time.Millisecond, 15*time.Second)
	for ctx.Err() == nil {
		start := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		// A token that lived a while was no failure to back off from (an operator revoked it, say); one refused
		// again and again at once (a policy without a path its users read) is.
		if err == nil || time.Since(start) > time.Minute {
			backoff.Reset()
		}
		if err == nil {
			continue
		}
		wait := backoff.Next()
		s.logger.Warn("vault session ended; logging in again", "err", err, "retry_in", wait)
		Sleep(ctx, wait)
	}
}

// errRefused ends a session whose token a user saw refused.
var errRefused = errors.New("vault refused the token")

// session is one token's life: login, then renewals until the token can no longer be renewed. A nil error
// means the token reached its max TTL and a new login is due.
func (s *Session) session(ctx context.Context) error {
	auth, err := s.login(ctx)
	if err != nil {
		return err
	}
	lc, err := s.client.Clone()
	if err != nil {
		return err
	}
	lc.SetToken(auth.Auth.ClientToken)
	watcher, err := lc.NewLifetimeWatcher(&vault.LifetimeWatcherInput{Secret: auth, RenewBehavior: vault.RenewBehaviorErrorOnErrors})
	if err != nil {
		return fmt.Errorf("token watcher: %w", err)
	}
	go watcher.Start()
	defer watcher.Stop()

	s.mu.Lock()
	s.logins++
	l := &Login{seq: s.logins, client: lc, done: make(chan struct{}), refused: make(chan struct{}, 1)}
	s.client.SetToken(auth.Auth.ClientToken)
	s.publish(l)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.publish(nil)
		s.mu.Unlock()
		close(l.done)
	}()
	s.logger.Info("logged in to vault", "method", s.method.name(), "token_ttl", time.Duration(auth.Auth.LeaseDuration)*time.Second)

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watcher.DoneCh():
			if err != nil {
				return fmt.Errorf("token renewal: %w", err)
			}
			s.logger.Info("vault token reached its max TTL")
			return nil
		case r := <-watcher.RenewCh():
			// The watcher renews on its own; the span marks when, and the TTL Vault granted (its duration is not ours to see).
			_, span := tracing.Span(ctx, "vault token renewed", attribute.String("pizza.vault.ttl", (time.Duration(r.Secret.Auth.LeaseDuration)*time.Second).String()))
			span.End()
			s.logger.Debug("vault token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
		case <-l.refused:
			return errRefused
		}
	}
}

// publish makes l current and wakes those waiting for a change. s.mu is held.
func (s *Session) publish(l *Login) {
	s.current = l
	close(s.changed)
	s.changed = make(chan struct{})
}

// login logs in on a token-less clone: others share s.client and keep its old token until the new one is set.
func (s *Session) login(ctx context.Context) (*vault.Secret, error) {
	lc, err := s.client.Clone()
	if err != nil {
		return nil, err
	}
	lc.ClearToken()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ctx, span := tracing.Span(ctx, "vault login", attribute.String("pizza.vault.method", s.method.name()))
	auth, err := s.method.login(ctx, lc)
	tracing.End(span, err)
	if err != nil {
		return nil, err
	}
	if auth == nil || auth.Auth == nil || auth.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s login returned no token", s.method.name())
	}
	return auth, nil
}
