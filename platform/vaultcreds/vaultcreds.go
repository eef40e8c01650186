// Package vaultcreds keeps a service's MySQL credentials fresh from Vault's database secrets engine.
//
// The service logs in with AppRole (role_id and secret_id from files the operator delivers; the secret_id file is
// re-read at every login, so delivering a new one needs no restart). It reads database/creds/<role> and hands the
// credentials to the MySQL connector, which uses them for every new connection. LifetimeWatchers renew the token
// and the lease. New credentials are fetched when the lease nears its max TTL, when a renewal fails (for example
// because an operator revoked the lease), and after every new login, because a lease dies with the token that
// created it. While Vault is unreachable the current credentials are kept until they expire; readiness reports
// false from then on, and the service recovers by itself when Vault returns.
package vaultcreds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

// Config says how to reach Vault and which credentials to ask for.
type Config struct {
	Addr string `conf:"default:https://127.0.0.1:8200"`
	// CACert is the CA that signed Vault's listener certificate; empty trusts the system's roots.
	CACert       string `conf:"help:CA certificate file to verify Vault's TLS certificate"`
	RoleIDFile   string `conf:"help:file holding the AppRole role_id"`
	SecretIDFile string `conf:"help:file holding the AppRole secret_id (or a response-wrapping token for it)"`
	// SecretIDWrapped says the secret_id file holds a response-wrapping token, unwrapped once per new file, as
	// soon as the file appears (the wrapping token lives minutes).
	SecretIDWrapped bool `conf:"default:true"`
	// Role is the AppRole's name: a wrapped secret_id must have been created by its secret-id endpoint.
	Role string `conf:"help:AppRole name the wrapped secret_id must come from"`
	// DBRole is the database role to read credentials of; empty keeps only a logged-in token (the gateway).
	DBRole string `conf:"default:order"`
	// Timeout bounds each call to Vault.
	Timeout time.Duration `conf:"default:10s"`
}

// lease is one set of credentials and how long it lives.
type lease struct {
	creds   mysqlconn.Credentials
	id      string
	ttl     time.Duration
	expires time.Time
	fetched time.Time
}

// Source is a mysqlconn.CredentialSource backed by Vault. Run must be running for it to have credentials.
type Source struct {
	cfg      Config
	client   *vault.Client
	logger   *slog.Logger
	current  atomic.Pointer[lease]
	loggedIn atomic.Bool
	logins   atomic.Uint64
	refresh  chan refreshRequest
	rejected chan struct{} // a user of the client saw the token refused
	// OnNewLease, if set, is called with each new lease's TTL (to keep the pool's ConnMaxLifetime below it).
	OnNewLease func(ttl time.Duration)

	// secretID caches an unwrapped secret_id with the wrapping token it came from; the file watcher and the
	// login share it.
	secretMu              sync.Mutex
	wrappedFrom, secretID string
	// pending are refresh requests waiting for the next credentials; fetch answers them. Only Run's goroutine
	// touches it.
	pending []chan error
}

var _ mysqlconn.CredentialSource = (*Source)(nil)

// New returns a Source for cfg. It does not call Vault.
func New(cfg Config, logger *slog.Logger) (*Source, error) {
	if cfg.RoleIDFile == "" || cfg.SecretIDFile == "" {
		return nil, errors.New("vault: role_id and secret_id files are required")
	}
	vc := vault.DefaultConfig()
	if vc.Error != nil {
		return nil, vc.Error
	}
	vc.Address = cfg.Addr
	vc.Timeout = cfg.Timeout
	if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert}); err != nil {
		return nil, fmt.Errorf("vault TLS: %w", err)
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	client.ClearToken() // never pick up an operator's VAULT_TOKEN from the environment
	return &Source{cfg: cfg, client: client, logger: logger.With("component", "vaultcreds"), refresh: make(chan refreshRequest),
		rejected: make(chan struct{}, 1)}, nil
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

// Client is the Vault client, logged in as the service once Run has started; Run keeps its token fresh, so
// other Vault users in the process (transit) share it.
func (s *Source) Client() *vault.Client { return s.client }

// Revoke gives the token back to Vault, which revokes the database leases made under it (their MySQL users are
// dropped). Call it after Run has returned, on shutdown.
func (s *Source) Revoke(ctx context.Context) error {
	if s.client.Token() == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		return fmt.Errorf("revoke vault token: %w", err)
	}
	s.client.ClearToken()
	s.logger.Info("vault token revoked; its database users are dropped")
	return nil
}

// WaitReady blocks until credentials are at hand or ctx ends (for one-shot commands).
func (s *Source) WaitReady(ctx context.Context) error {
	return waitUntil(ctx, "no database credentials from vault", func() bool { return s.Ready(ctx) == nil })
}

// waitUntil polls done until it holds or ctx ends; what names the failure.
func waitUntil(ctx context.Context, what string, done func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
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

// Run logs in and keeps credentials fresh until ctx is done. It returns only then.
func (s *Source) Run(ctx context.Context) {
	if s.cfg.SecretIDWrapped {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { s.watchSecretID(ctx, 2*time.Second) })
	}
	backoff := newBackoff(500*time.Millisecond, 15*time.Second)
	for ctx.Err() == nil {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := backoff.next()
		if err == nil {
			backoff.reset()
			wait = 0
		} else {
			s.logger.Warn("vault session ended; logging in again", "err", err, "retry_in", wait)
		}
		s.holdRefreshes(ctx, wait)
	}
}

// holdRefreshes waits d between sessions. Refresh requests meanwhile wait for the next session's credentials
// (their callers' deadlines bound that), so a connection refused during a re-login succeeds right after it.
func (s *Source) holdRefreshes(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case req := <-s.refresh:
			s.pending = append(s.pending, req.reply)
		}
	}
}

// session is one token's life: login, then credentials under it until the token can no longer be renewed.
// A nil error means the token reached its max TTL and a new login is due.
func (s *Source) session(ctx context.Context) error {
	auth, err := s.login(ctx)
	if err != nil {
		return err
	}
	tokenWatcher, err := s.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{
		Secret: auth, RenewBehavior: vault.RenewBehaviorErrorOnErrors,
	})
	if err != nil {
		return fmt.Errorf("token watcher: %w", err)
	}
	go tokenWatcher.Start()
	defer tokenWatcher.Stop()
	s.logger.Info("logged in to vault", "token_ttl", time.Duration(auth.Auth.LeaseDuration)*time.Second)
	s.loggedIn.Store(true)
	s.logins.Add(1)
	defer s.loggedIn.Store(false)
	if s.cfg.DBRole == "" {
		return s.keepToken(ctx, tokenWatcher)
	}

	var (
		l      *lease
		secret *vault.Secret
	)
	for {
		if l == nil {
			if l, secret, err = s.fetch(ctx); err != nil {
				return err
			}
		}
		leaseWatcher, err := s.client.NewLifetimeWatcher(&vault.LifetimeWatcherInput{
			Secret: secret, RenewBehavior: vault.RenewBehaviorErrorOnErrors,
		})
		if err != nil {
			return fmt.Errorf("lease watcher: %w", err)
		}
		go leaseWatcher.Start()
		next, err := s.watch(ctx, l, tokenWatcher, leaseWatcher)
		leaseWatcher.Stop()
		if err != nil || next == nil {
			return err
		}
		l, secret = next.lease, next.secret
	}
}

// keepToken follows the token alone (no database role): until it cannot be renewed or ctx ends.
func (s *Source) keepToken(ctx context.Context, token *vault.LifetimeWatcher) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-token.DoneCh():
			if err != nil {
				return fmt.Errorf("token renewal: %w", err)
			}
			return nil
		case <-token.RenewCh():
		case <-s.rejected:
			return errors.New("vault refused the token")
		}
	}
}

// TokenRejected tells the Source that Vault refused its token (403), e.g. because an operator revoked it:
// the Source logs in again at once instead of at the token's next renewal.
func (s *Source) TokenRejected() {
	select {
	case s.rejected <- struct{}{}:
	default: // one pending signal is enough
	}
}

// Relogin asks for a new login after Vault refused the token and waits (within ctx) until it happened.
func (s *Source) Relogin(ctx context.Context) error {
	n := s.logins.Load()
	s.TokenRejected()
	return waitUntil(ctx, "log in to vault again", func() bool { return s.logins.Load() > n && s.loggedIn.Load() })
}

// WaitLoggedIn blocks until the Source holds a live token or ctx ends.
func (s *Source) WaitLoggedIn(ctx context.Context) error {
	return waitUntil(ctx, "not logged in to vault", s.loggedIn.Load)
}

// IsForbidden reports whether err is Vault refusing the request's token.
func IsForbidden(err error) bool {
	var re *vault.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

// LoggedIn reports an error unless the Source holds a live Vault token (readiness of a token-only Source).
func (s *Source) LoggedIn(context.Context) error {
	if !s.loggedIn.Load() {
		return errors.New("not logged in to vault")
	}
	return nil
}

// nextLease says what follows a lease: a lease already fetched (after a refresh), or nil ones to fetch now.
type nextLease struct {
	lease  *lease
	secret *vault.Secret
}

// watch follows one lease. It returns a non-nil nextLease when new credentials are due under the same token,
// and nil (with the reason, nil at max TTL) when the token is done.
func (s *Source) watch(ctx context.Context, l *lease, token, lw *vault.LifetimeWatcher) (*nextLease, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-token.DoneCh():
			if err != nil {
				return nil, fmt.Errorf("token renewal: %w", err)
			}
			s.logger.Info("vault token reached its max TTL")
			return nil, nil
		case r := <-token.RenewCh():
			s.logger.Debug("vault token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
		case <-s.rejected:
			return nil, errors.New("vault refused the token")
		case err := <-lw.DoneCh():
			if err != nil {
				s.logger.Warn("database lease renewal failed; fetching new credentials", "err", err, "username", l.creds.Username)
			} else {
				s.logger.Info("database lease nears its max TTL; fetching new credentials", "username", l.creds.Username)
			}
			return &nextLease{}, nil
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
			// The connector waits for the answer: fetch first, so it retries with the new user. If the fetch
			// fails (the token was revoked too), the next session's credentials answer it.
			s.pending = append(s.pending, req.reply)
			nl, secret, err := s.fetch(ctx)
			if err != nil {
				return nil, err
			}
			return &nextLease{lease: nl, secret: secret}, nil
		}
	}
}

// login authenticates with AppRole, reading role_id and secret_id from their files now.
func (s *Source) login(ctx context.Context) (*vault.Secret, error) {
	roleID, err := readTrimmed(s.cfg.RoleIDFile)
	if err != nil {
		return nil, fmt.Errorf("role_id: %w", err)
	}
	secretID, err := s.loginSecretID(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// Log in on a token-less clone: others share s.client and keep using the old token until the new one is set.
	lc, err := s.client.Clone()
	if err != nil {
		return nil, err
	}
	lc.ClearToken()
	auth, err := lc.Logical().WriteWithContext(ctx, "auth/approle/login", map[string]any{
		"role_id": roleID, "secret_id": secretID,
	})
	if err != nil {
		return nil, fmt.Errorf("approle login: %w", err)
	}
	if auth == nil || auth.Auth == nil || auth.Auth.ClientToken == "" {
		return nil, errors.New("approle login returned no token")
	}
	s.client.SetToken(auth.Auth.ClientToken)
	return auth, nil
}

// loginSecretID reads the secret_id file; a wrapped one is unwrapped once per new wrapping token.
func (s *Source) loginSecretID(ctx context.Context) (string, error) {
	v, err := readTrimmed(s.cfg.SecretIDFile)
	if err != nil {
		return "", fmt.Errorf("secret_id: %w", err)
	}
	if !s.cfg.SecretIDWrapped {
		return v, nil
	}
	return s.unwrapSecretID(ctx, v)
}

// watchSecretID unwraps a newly delivered secret_id as soon as its file changes, not at the next login (which
// may be hours away, long after the wrapping token expired).
func (s *Source) watchSecretID(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := readTrimmed(s.cfg.SecretIDFile)
		if err != nil {
			continue // being replaced, or gone: the next login says so
		}
		s.secretMu.Lock()
		seen := v == s.wrappedFrom
		s.secretMu.Unlock()
		if seen {
			continue
		}
		if _, err := s.unwrapSecretID(ctx, v); err != nil {
			s.logger.Error("could not unwrap the newly delivered secret_id", "err", err)
			continue
		}
		s.logger.Info("new secret_id delivered and unwrapped; used at the next login")
	}
}

// unwrapSecretID unwraps the wrapping token v once, after checking that Vault made it for an AppRole secret_id
// (of the configured role): a token wrapping anything else, or one someone else unwrapped first, is refused.
func (s *Source) unwrapSecretID(ctx context.Context, v string) (string, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if v == s.wrappedFrom && s.secretID != "" {
		return s.secretID, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	uc, err := s.client.Clone() // Unwrap puts the wrapping token on the client it runs on
	if err != nil {
		return "", err
	}
	uc.ClearToken()
	info, err := uc.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": v})
	if err != nil {
		return "", fmt.Errorf("look up the secret_id's wrapping token (expired, or already unwrapped by someone else: "+
			"treat the delivery as compromised): %w", err)
	}
	path, _ := info.Data["creation_path"].(string)
	if !wrappedSecretIDPath(path, s.cfg.Role) {
		return "", fmt.Errorf("the secret_id file holds a wrapping token from %q, not an AppRole secret_id of role %q", path, s.cfg.Role)
	}
	unwrapped, err := uc.Logical().UnwrapWithContext(ctx, v)
	if err != nil {
		return "", fmt.Errorf("unwrap secret_id: %w", err)
	}
	id, _ := unwrapped.Data["secret_id"].(string)
	if id == "" {
		return "", errors.New("unwrapped secret has no secret_id")
	}
	s.wrappedFrom, s.secretID = v, id
	return id, nil
}

// wrappedSecretIDPath says whether a wrapping token's creation path is auth/approle/role/<role>/secret-id (any
// role when role is empty).
func wrappedSecretIDPath(path, role string) bool {
	rest, ok := strings.CutPrefix(path, "auth/approle/role/")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, "/secret-id")
	return ok && name != "" && !strings.Contains(name, "/") && (role == "" || name == role)
}

// fetch reads new database credentials and makes them current.
func (s *Source) fetch(ctx context.Context) (*lease, *vault.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	secret, err := s.client.Logical().ReadWithContext(ctx, "database/creds/"+s.cfg.DBRole)
	if err != nil {
		return nil, nil, fmt.Errorf("read database/creds/%s: %w", s.cfg.DBRole, err)
	}
	if secret == nil {
		return nil, nil, fmt.Errorf("database/creds/%s: no such role", s.cfg.DBRole)
	}
	user, _ := secret.Data["username"].(string)
	pass, _ := secret.Data["password"].(string)
	if user == "" || pass == "" {
		return nil, nil, fmt.Errorf("database/creds/%s returned no username or password", s.cfg.DBRole)
	}
	ttl := time.Duration(secret.LeaseDuration) * time.Second
	now := time.Now()
	l := &lease{creds: mysqlconn.Credentials{Username: user, Password: pass}, id: secret.LeaseID, ttl: ttl,
		expires: now.Add(ttl), fetched: now}
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

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// backoff doubles a delay up to a limit.
type backoff struct{ base, limit, cur time.Duration }

func newBackoff(base, limit time.Duration) *backoff { return &backoff{base: base, limit: limit} }

func (b *backoff) next() time.Duration {
	b.cur = min(max(b.cur*2, b.base), b.limit)
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
