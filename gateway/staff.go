package gateway

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/discard"
	"github.com/pizzajoint/mesh/platform/clientlimit"
	"github.com/pizzajoint/mesh/platform/httpjson"
)

// StaffOwners says whose a staff token is (tokenhash.Registry, loaded from Vault KV).
type StaffOwners interface {
	Owner(ctx context.Context, token string) (string, error)
}

// StaffAuth guards the staff routes. A staff member signs in with a bearer token (issued by an operator with
// scripts/staff-token.sh) and gets a session held here, whose random ID the portal keeps in an HttpOnly
// cookie; API clients send the token itself as a bearer token. A nil *StaffAuth means staff sign-in is not
// configured: staff routes answer 503.
type StaffAuth struct {
	owners   StaffOwners
	logger   *slog.Logger
	sessions *sessionStore
}

// NewStaffAuth returns a StaffAuth checking tokens with owners and holding sessions under policy.
func NewStaffAuth(owners StaffOwners, logger *slog.Logger, policy SessionPolicy) *StaffAuth {
	return &StaffAuth{owners: owners, logger: logger, sessions: newSessionStore(policy)}
}

const staffCookie = "pizza_staff"

var errStaffNotConfigured = errors.New("staff sign-in is not configured on this gateway")

type staffKey struct{}

// StaffName is the signed-in staff member of a request, or "".
func StaffName(ctx context.Context) string {
	n, _ := ctx.Value(staffKey{}).(string)
	return n
}

// authenticate finds the staff member behind a request: a bearer token, or a live session whose token is
// still valid (so revoking a token in Vault ends its sessions too).
func (a *StaffAuth) authenticate(r *http.Request) (string, error) {
	if a == nil {
		return "", errStaffNotConfigured
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		return a.check(r, strings.TrimPrefix(auth, "Bearer "))
	}
	c, err := r.Cookie(staffCookie)
	if err != nil {
		return "", ErrUnauthenticated
	}
	token, ok := a.sessions.lookup(c.Value)
	if !ok {
		return "", ErrUnauthenticated
	}
	name, err := a.check(r, token)
	if err != nil {
		a.sessions.revoke(c.Value)
	}
	return name, err
}

func (a *StaffAuth) check(r *http.Request, token string) (string, error) {
	if a == nil {
		return "", errStaffNotConfigured
	}
	if token == "" {
		return "", ErrUnauthenticated
	}
	name, err := a.owners.Owner(r.Context(), token)
	if err != nil {
		return "", ErrUnauthenticated
	}
	return name, nil
}

// fail answers a request staff sign-in refused: not configured, or not authenticated, never why.
func (a *StaffAuth) fail(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, errStaffNotConfigured) {
		err = ErrUnauthenticated
	}
	EncodeError(r.Context(), err, w)
}

// Require lets signed-in staff through to next.
func (a *StaffAuth) Require(next http.Handler) http.Handler {
	return a.requireLimited(nil, discard.NewCounter(), next)
}

// requireLimited is Require where a wrong bearer token is a guess like a wrong sign-in: each one takes a request
// from the client's bucket in guesses (the sign-in limit), and a client whose bucket is empty is refused with 429
// before its token is checked, so bearer tokens cannot be brute-forced faster than sign-in. A valid token costs
// nothing, so staff API clients are not slowed. refused counts the 429s.
func (a *StaffAuth) requireLimited(guesses *clientlimit.RateLimiter, refused metrics.Counter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bearer := strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ")
		client := clientlimit.ClientKey(r)
		if bearer {
			if ok, retry := guesses.Peek(client); !ok {
				refused.Add(1)
				EncodeError(r.Context(), &LimitError{Kind: ErrRateLimited,
					Msg: "too many wrong staff tokens; retry later", RetryAfter: retry}, w)
				return
			}
		}
		name, err := a.authenticate(r)
		if err != nil {
			if bearer && errors.Is(err, ErrUnauthenticated) {
				guesses.Allow(client)
			}
			a.fail(w, r, err)
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

// Login turns a valid staff token ({"token": "..."}) into a session, and its ID into a cookie.
func (a *StaffAuth) Login(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if err := httpjson.Decode(r, MaxLoginBytes, &req); err != nil {
		EncodeError(r.Context(), err, w)
		return
	}
	name, err := a.check(r, req.Token)
	if err != nil {
		a.fail(w, r, err)
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
func (a *StaffAuth) Logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(staffCookie); err == nil && a != nil {
		a.sessions.revoke(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: staffCookie, Value: "", Path: "/staff", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

//go:embed staffui
var staffUI embed.FS

// mountStaffUI serves the portal's static files under /staff/, with a policy that allows only this origin.
func mountStaffUI(mux *http.ServeMux) {
	sub, err := fs.Sub(staffUI, "staffui")
	if err != nil {
		panic(err) // the folder is embedded at build time
	}
	files := http.StripPrefix("/staff/", http.FileServerFS(sub))
	mux.Handle("GET /staff/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w.Header())
		files.ServeHTTP(w, r)
	}))
}
