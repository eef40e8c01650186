package gateway

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/httpjson"
)

// StaffOwners says whose a staff token is (tokenhash.Registry, loaded from Vault KV).
type StaffOwners interface {
	Owner(ctx context.Context, token string) (string, error)
}

// StaffAuth guards the staff routes. A staff member signs in with a bearer token (issued by an operator with
// scripts/staff-token.sh); the portal keeps it in an HttpOnly cookie, API clients send it as a bearer token.
// A nil *StaffAuth means staff sign-in is not configured: staff routes answer 503.
type StaffAuth struct {
	owners StaffOwners
	logger *slog.Logger
}

// NewStaffAuth returns a StaffAuth checking tokens with owners.
func NewStaffAuth(owners StaffOwners, logger *slog.Logger) *StaffAuth {
	return &StaffAuth{owners: owners, logger: logger}
}

const (
	staffCookie     = "pizza_staff"
	staffCookieLife = 12 * time.Hour
)

var errStaffNotConfigured = errors.New("staff sign-in is not configured on this gateway")

type staffKey struct{}

// StaffName is the signed-in staff member of a request, or "".
func StaffName(ctx context.Context) string {
	n, _ := ctx.Value(staffKey{}).(string)
	return n
}

func staffToken(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		return strings.TrimPrefix(auth, "Bearer ")
	}
	if c, err := r.Cookie(staffCookie); err == nil {
		return c.Value
	}
	return ""
}

func (a *StaffAuth) check(r *http.Request, token string) (string, error) {
	if a == nil {
		return "", errStaffNotConfigured
	}
	name, err := a.owners.Owner(r.Context(), token)
	if err != nil {
		return "", ErrUnauthenticated
	}
	return name, nil
}

func (a *StaffAuth) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errStaffNotConfigured) {
		EncodeError(r.Context(), &httpjson.RequestError{Status: http.StatusServiceUnavailable, Msg: err.Error()}, w)
		return
	}
	EncodeError(r.Context(), ErrUnauthenticated, w)
}

// Require lets signed-in staff through to next.
func (a *StaffAuth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, err := a.check(r, staffToken(r))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), staffKey{}, name)))
	})
}

// Login turns a valid staff token ({"token": "..."}) into a session cookie.
func (a *StaffAuth) Login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := httpjson.Decode(r, 4<<10, &req); err != nil {
		EncodeError(r.Context(), err, w)
		return
	}
	name, err := a.check(r, req.Token)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: staffCookie, Value: req.Token, Path: "/staff", MaxAge: int(staffCookieLife.Seconds()),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	a.logger.Info("staff signed in", "staff", name)
	w.WriteHeader(http.StatusNoContent)
}

// Logout clears the session cookie.
func (a *StaffAuth) Logout(w http.ResponseWriter, _ *http.Request) {
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
