// Package staff is the staff's way in: sign-in with a staff token (checked against hashes in Vault KV, see
// FromVault), the sessions it opens, the guard of the staff routes, and the kitchen board's files (staffui/,
// embedded). It writes errors with the encoder it is given (the gateway's one error table).
package staff

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/discard"
	"github.com/pizzajoint/mesh/gateway/edge"
	"github.com/pizzajoint/mesh/platform/clientlimit"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// Owners says whose a staff token is (tokenhash.Registry, loaded from Vault KV).
type Owners interface {
	Owner(ctx context.Context, token string) (string, error)
}

// Auth guards the staff routes. A staff member signs in with a bearer token (issued by an operator with
// scripts/staff-token.sh) and gets a session held here, whose random ID the portal keeps in an HttpOnly
// cookie; API clients send the token itself as a bearer token. A nil *Auth means staff sign-in is not
// configured: staff routes answer 503.
type Auth struct {
	owners   Owners
	logger   *slog.Logger
	sessions *sessionStore
}

// NewAuth returns an Auth checking tokens with owners and holding sessions under policy.
func NewAuth(owners Owners, logger *slog.Logger, policy SessionPolicy) *Auth {
	return &Auth{owners: owners, logger: logger, sessions: newSessionStore(policy)}
}

const staffCookie = "pizza_staff"

// ErrNotConfigured answers the staff routes of a gateway without staff sign-in.
var ErrNotConfigured = errors.New("staff sign-in is not configured on this gateway")

type staffKey struct{}

// Name is the signed-in staff member of a request, or "".
func Name(ctx context.Context) string {
	n, _ := ctx.Value(staffKey{}).(string)
	return n
}

// authenticate finds the staff member behind a request: a bearer token, or a live session whose token is
// still valid (so revoking a token in Vault ends its sessions too).
func (a *Auth) authenticate(r *http.Request) (string, error) {
	if a == nil {
		return "", ErrNotConfigured
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		return a.check(r, strings.TrimPrefix(auth, "Bearer "))
	}
	c, err := r.Cookie(staffCookie)
	if err != nil {
		return "", edge.ErrUnauthenticated
	}
	token, ok := a.sessions.lookup(c.Value)
	if !ok {
		return "", edge.ErrUnauthenticated
	}
	name, err := a.check(r, token)
	if err != nil {
		a.sessions.revoke(c.Value)
	}
	return name, err
}

func (a *Auth) check(r *http.Request, token string) (string, error) {
	if a == nil {
		return "", ErrNotConfigured
	}
	if token == "" {
		return "", edge.ErrUnauthenticated
	}
	name, err := a.owners.Owner(r.Context(), token)
	if err != nil {
		return "", edge.ErrUnauthenticated
	}
	return name, nil
}

// fail answers a request staff sign-in refused: not configured, or not authenticated, never why.
func (a *Auth) fail(encodeError edge.ErrorEncoder, w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, ErrNotConfigured) {
		err = edge.ErrUnauthenticated
	}
	encodeError(r.Context(), err, w)
}

// Require lets signed-in staff through to next; encodeError answers the others.
func (a *Auth) Require(encodeError edge.ErrorEncoder, next http.Handler) http.Handler {
	return a.RequireLimited(nil, discard.NewCounter(), encodeError, next)
}

// RequireLimited is Require where a wrong bearer token is a guess like a wrong sign-in: each one takes a request
// from the client's bucket in guesses (the sign-in limit), and a client whose bucket is empty is refused with 429
// before its token is checked, so bearer tokens cannot be brute-forced faster than sign-in. A valid token costs
// nothing, so staff API clients are not slowed. refused counts the 429s.
func (a *Auth) RequireLimited(guesses *clientlimit.RateLimiter, refused metrics.Counter, encodeError edge.ErrorEncoder, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer := strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
		client := clientlimit.ClientKey(r)
		if bearer {
			if ok, retry := guesses.Peek(client); !ok {
				refused.Add(1)
				encodeError(r.Context(), &edge.LimitError{Kind: edge.ErrRateLimited,
					Msg: "too many wrong staff tokens; retry later", RetryAfter: retry}, w)
				return
			}
		}
		name, err := a.authenticate(r)
		if err != nil {
			if bearer && errors.Is(err, edge.ErrUnauthenticated) {
				guesses.Allow(client)
			}
			a.fail(encodeError, w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), staffKey{}, name)))
	})
}

// LoginRequest is the body of POST /staff/login.
type LoginRequest struct {
	Token string `json:"token"`
}

// MaxLoginBytes bounds a sign-in body: a token is well under a hundred bytes.
const MaxLoginBytes = 4 << 10

// Login turns a valid staff token ({"token": "..."}) into a session, and its ID into a cookie; encodeError
// answers a refusal.
func (a *Auth) Login(encodeError edge.ErrorEncoder) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { a.login(encodeError, w, r) }
}

func (a *Auth) login(encodeError edge.ErrorEncoder, w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if err := httpjson.Decode(r, MaxLoginBytes, &req); err != nil {
		encodeError(r.Context(), err, w)
		return
	}
	name, err := a.check(r, req.Token)
	if err != nil {
		a.fail(encodeError, w, r, err)
		return
	}
	if c, err := r.Cookie(staffCookie); err == nil {
		a.sessions.revoke(c.Value) // signing in again replaces the browser's session, never adds one
	}
	id := a.sessions.create(req.Token)
	http.SetCookie(w, &http.Cookie{Name: staffCookie, Value: id, Path: "/staff",
		MaxAge:   int(a.sessions.policy.Absolute.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	a.logger.Info("staff signed in", "staff", name)
	w.WriteHeader(http.StatusNoContent)
}

// Logout ends the session and clears its cookie.
func (a *Auth) Logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(staffCookie); err == nil && a != nil {
		a.sessions.revoke(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: staffCookie, Value: "", Path: "/staff", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}
