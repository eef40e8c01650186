// Package dblease keeps a service's MySQL credentials fresh from Vault's database secrets engine.
//
// A Source reads database/creds/<role> under the token of a vaultauth.Session and hands the credentials to the
// MySQL connector, which uses them for every new connection. A LifetimeWatcher renews the lease. New credentials
// are fetched when the lease nears its max TTL, when a renewal fails (an operator revoked the lease), when the
// database refuses the current user, and after every new login, because a lease dies with the token that made
// it. While Vault is unreachable the current credentials are kept until they expire; readiness reports false
// from then on.
package dblease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
	"github.com/pizzajoint/mesh/platform/vaultauth"
)

// lease is one set of credentials and how long it lives.
type lease struct {
	creds   mysqlconn.Credentials
	ttl     time.Duration
	expires time.Time
}

// Source is a mysqlconn.CredentialSource backed by Vault. Run, and the Session's Run, must be running for it to
// have credentials.
type Source struct {
	session *vaultauth.Session
	role    string
	logger  *slog.Logger
	current atomic.Pointer[lease]
	refresh chan refreshRequest
	// OnNewLease, if set, is called with each new lease's TTL (to keep the pool's ConnMaxLifetime below it).
	// Set it before Run.
	OnNewLease func(ttl time.Duration)

	// pending are refresh requests waiting for the next credentials; fetch answers them. Only Run's goroutine
	// touches it.
	pending []chan error
}

var (
	_ mysqlconn.CredentialSource = (*Source)(nil)
	_ mysqlconn.Refresher        = (*Source)(nil)
)

// New returns a Source of database/creds/<role> under session's logins. It does not call Vault.
func New(session *vaultauth.Session, role string, logger *slog.Logger) (*Source, error) {
	if role == "" {
		return nil, errors.New("dblease: no database role")
	}
	return &Source{session: session, role: role, logger: logger.With("component", "dblease", "db_role", role),
		refresh: make(chan refreshRequest)}, nil
}

// Login returns a Source of database/creds/<role> under a Vault login of its own made from cfg (the service's
// login). It does not call Vault; Start runs both.
func Login(cfg vaultauth.Config, role string, logger *slog.Logger) (*Source, error) {
	session, err := vaultauth.New(cfg, logger)
	if err != nil {
		return nil, err
	}
	return New(session, role, logger)
}

// Session is the Vault login the credentials are made under, for the service's other calls to Vault (transit).
func (s *Source) Session() *vaultauth.Session { return s.session }

// Start logs in and keeps credentials (the session's Run and Run) until stop, which ends both, waits for
// them, and then gives the token back: the database users made under it are dropped at once (a DDL user does
// not outlive its command until its lease ends). The token is given back also when ctx has ended, since that
// is how a service stops. Set OnNewLease before Start.
func (s *Source) Start(ctx context.Context) (stop func()) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.session.Run(runCtx) })
	wg.Go(func() { s.Run(runCtx) })
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		if err := s.Revoke(context.WithoutCancel(ctx)); err != nil {
			s.logger.Warn("could not give the vault token back; its database users expire with their leases", "err", err)
		}
	})
}

// Credentials returns the current credentials. It never calls Vault.
func (s *Source) Credentials(context.Context) (mysqlconn.Credentials, error) {
	l := s.current.Load()
	if l == nil {
		return mysqlconn.Credentials{}, errors.New("no database credentials from vault yet")
	}
	return l.creds, nil
}

// Ready reports an error unless unexpired credentials are at hand.
func (s *Source) Ready(context.Context) error {
	l := s.current.Load()
	switch {
	case l == nil:
		return errors.New("no database credentials yet")
	case time.Now().After(l.expires):
		return errors.New("database credentials expired")
	}
	return nil
}

// WaitReady blocks until credentials are at hand or ctx ends (for one-shot commands).
func (s *Source) WaitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.Ready(ctx) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no database credentials from vault: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Username returns the current MySQL user (for logs and tests), or "".
func (s *Source) Username() string {
	if l := s.current.Load(); l != nil {
		return l.creds.Username
	}
	return ""
}

// Revoke gives the session's token back to Vault, which revokes the leases made under it (their MySQL users
// are dropped). Call it after Run and the session's Run have returned, on shutdown.
func (s *Source) Revoke(ctx context.Context) error {
	if err := s.session.Revoke(ctx); err != nil {
		return err
	}
	s.logger.Info("database leases revoked with the vault token; their users are dropped")
	return nil
}

// refreshRequest asks Run for credentials newer than the rejected user's.
type refreshRequest struct {
	rejected string
	reply    chan error
}

// Refresh asks for new credentials now, for a connector whose login as rejected was refused (the user was
// revoked). It returns when credentials other than rejected are current, so a burst of refused connections
// fetches one new user, not one each.
func (s *Source) Refresh(ctx context.Context, rejected string) error {
	reply := make(chan error, 1)
	select {
	case s.refresh <- refreshRequest{rejected: rejected, reply: reply}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run keeps credentials fresh until ctx is done. It returns only then.
func (s *Source) Run(ctx context.Context) {
	backoff := vaultauth.NewBackoff(500*time.Millisecond, 15*time.Second)
	for {
		login := s.awaitLogin(ctx)
		if login == nil {
			return
		}
		s.underLogin(ctx, login, backoff)
	}
}

// awaitLogin waits for a live login; refresh requests meanwhile wait for its credentials (their callers'
// deadlines bound that), so a connection refused during a re-login succeeds right after it. Nil when ctx ends.
func (s *Source) awaitLogin(ctx context.Context) *vaultauth.Login {
	for {
		login, changed := s.session.Current()
		if login != nil {
			return login
		}
		if !s.hold(ctx, changed, -1) {
			return nil
		}
	}
}

// hold collects refresh requests until ctx ends (false), until closes, or d passes (d < 0: no limit).
func (s *Source) hold(ctx context.Context, until <-chan struct{}, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-until:
			return true
		case <-timeout:
			return true
		case req := <-s.refresh:
			s.pending = append(s.pending, req.reply)
		}
	}
}

// underLogin keeps credentials made under login until its token is done (or ctx is).
func (s *Source) underLogin(ctx context.Context, login *vaultauth.Login, backoff *vaultauth.Backoff) {
	var (
		l      *lease
		secret *vault.Secret
		err    error
	)
	for ctx.Err() == nil {
		if l == nil {
			l, secret, err = s.fetch(ctx, login)
			switch {
			case vaultauth.IsForbidden(err):
				// The token was revoked: credentials come with the next login.
				s.logger.Warn("vault refused the token while fetching database credentials; waiting for a new login")
				login.Refuse()
				s.hold(ctx, login.Done(), -1)
				return
			case err != nil:
				wait := backoff.Next()
				s.logger.Warn("could not fetch database credentials; retrying", "err", err, "retry_in", wait)
				if !s.hold(ctx, login.Done(), wait) || ended(login) {
					return
				}
				continue
			}
			backoff.Reset()
		}
		watcher, err := login.Client().NewLifetimeWatcher(&vault.LifetimeWatcherInput{
			Secret: secret, RenewBehavior: vault.RenewBehaviorErrorOnErrors,
		})
		if err != nil { // only for a secret that is no lease: Vault's answer was malformed
			s.logger.Error("cannot watch the database lease; fetching new credentials", "err", err)
			if !s.hold(ctx, login.Done(), backoff.Next()) || ended(login) {
				return
			}
			l = nil
			continue
		}
		go watcher.Start()
		more := s.watch(ctx, login, l, watcher)
		watcher.Stop()
		if !more {
			return
		}
		l = nil
	}
}

func ended(login *vaultauth.Login) bool {
	select {
	case <-login.Done():
		return true
	default:
		return false
	}
}

// watch follows one lease. It returns true when new credentials are due under the same login, false when the
// login (or ctx) is done.
func (s *Source) watch(ctx context.Context, login *vaultauth.Login, l *lease, lw *vault.LifetimeWatcher) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-login.Done():
			s.logger.Info("vault login ended; its database lease dies with it", "username", l.creds.Username)
			return false
		case err := <-lw.DoneCh():
			if err != nil {
				s.logger.Warn("database lease renewal failed; fetching new credentials", "err", err, "username", l.creds.Username)
			} else {
				s.logger.Info("database lease nears its max TTL; fetching new credentials", "username", l.creds.Username)
			}
			return true
		case r := <-lw.RenewCh():
			ttl := time.Duration(r.Secret.LeaseDuration) * time.Second
			renewed := *l
			renewed.ttl, renewed.expires = ttl, time.Now().Add(ttl)
			s.current.Store(&renewed)
			l = &renewed
			s.logger.Debug("database lease renewed", "username", l.creds.Username, "ttl", ttl)
		case req := <-s.refresh:
			if req.rejected != l.creds.Username {
				req.reply <- nil // already past the rejected user
				continue
			}
			s.logger.Warn("database login refused; fetching new credentials", "username", l.creds.Username)
			// The connector waits for the answer: the next fetch gives it, so it retries with the new user.
			s.pending = append(s.pending, req.reply)
			return true
		}
	}
}

// fetch reads new database credentials under login's token and makes them current.
func (s *Source) fetch(ctx context.Context, login *vaultauth.Login) (*lease, *vault.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, s.session.Timeout())
	defer cancel()
	path := "database/creds/" + s.role
	secret, err := login.Client().Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	if secret == nil {
		return nil, nil, fmt.Errorf("%s: no such role", path)
	}
	user, _ := secret.Data["username"].(string)
	pass, _ := secret.Data["password"].(string)
	if user == "" || pass == "" {
		return nil, nil, fmt.Errorf("%s returned no username or password", path)
	}
	ttl := time.Duration(secret.LeaseDuration) * time.Second
	l := &lease{creds: mysqlconn.Credentials{Username: user, Password: pass}, ttl: ttl, expires: time.Now().Add(ttl)}
	s.current.Store(l)
	for _, reply := range s.pending {
		reply <- nil // buffered: a caller that gave up is not waited for
	}
	s.pending = nil
	if s.OnNewLease != nil {
		s.OnNewLease(ttl)
	}
	s.logger.Info("new database credentials", "username", user, "ttl", ttl)
	return l, secret, nil
}
