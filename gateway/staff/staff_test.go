package staff_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/pizzajoint/mesh/gateway/staff"
)

// revocableOwners is a token table that a test can change while the gateway runs.
type revocableOwners struct {
	mu     sync.Mutex
	tokens map[string]string
}

func (o *revocableOwners) Owner(_ context.Context, token string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if name, ok := o.tokens[token]; ok {
		return name, nil
	}
	return "", errors.New("unknown")
}

func (o *revocableOwners) revoke(token string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.tokens, token)
}

type staffCall struct {
	method, path, body, bearer, cookie string
}

func (c staffCall) do(t *testing.T, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		r.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != "" {
		r.AddCookie(&http.Cookie{Name: "pizza_staff", Value: c.cookie})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func newStaffHandler(owners staff.Owners, logs *bytes.Buffer) http.Handler {
	auth := staff.NewAuth(owners, slog.New(slog.NewTextHandler(logs, nil)), staff.SessionPolicy{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /staff/login", auth.Login(gateway.EncodeError))
	mux.HandleFunc("POST /staff/logout", auth.Logout)
	mux.Handle("GET /staff/api/whoami", auth.Require(gateway.EncodeError, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(staff.Name(r.Context())))
	})))
	return mux
}

func login(t *testing.T, h http.Handler, token string) string {
	t.Helper()
	rec := staffCall{method: "POST", path: "/staff/login", body: `{"token":"` + token + `"}`}.do(t, h)
	if rec.Code != 204 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "pizza_staff" {
			return c.Value
		}
	}
	t.Fatal("login set no session cookie")
	return ""
}

func TestStaffLogin(t *testing.T) {
	var logs bytes.Buffer
	h := newStaffHandler(&revocableOwners{tokens: map[string]string{"tok-alice": "alice"}}, &logs)
	tests := []struct {
		name   string
		body   string
		status int
	}{
		{"wrong token", `{"token":"nope"}`, 401},
		{"empty token", `{"token":""}`, 401},
		{"no token", `{}`, 401},
		{"unknown field", `{"token":"tok-alice","remember":true}`, 400},
		{"token in another case", `{"Token":"tok-alice"}`, 400},
		{"two tokens", `{"token":"nope","token":"tok-alice"}`, 400},
		{"not JSON", `token=tok-alice`, 400},
		{"too big", `{"token":"` + strings.Repeat("x", staff.MaxLoginBytes) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := staffCall{method: "POST", path: "/staff/login", body: tt.body}.do(t, h)
			if rec.Code != tt.status || len(rec.Result().Cookies()) != 0 {
				t.Fatalf("login: %d, cookies %v; want %d and no cookie", rec.Code, rec.Result().Cookies(), tt.status)
			}
		})
	}

	t.Run("valid token", func(t *testing.T) {
		rec := staffCall{method: "POST", path: "/staff/login", body: `{"token":"tok-alice"}`}.do(t, h)
		cookies := rec.Result().Cookies()
		if rec.Code != 204 || len(cookies) != 1 {
			t.Fatalf("login: %d, cookies %v", rec.Code, cookies)
		}
		c := cookies[0]
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/staff" || c.MaxAge <= 0 {
			t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/staff, a max age", c)
		}
		if strings.Contains(c.Value, "tok-alice") || len(c.Value) < 40 {
			t.Errorf("cookie value %q: want an opaque random session ID, not the token", c.Value)
		}
		if strings.Contains(logs.String(), "tok-alice") || strings.Contains(logs.String(), c.Value) {
			t.Errorf("logs hold the token or the session ID: %s", logs.String())
		}
	})
}

func TestStaffSessions(t *testing.T) {
	owners := &revocableOwners{tokens: map[string]string{"tok-alice": "alice", "tok-bob": "bob"}}
	h := newStaffHandler(owners, &bytes.Buffer{})
	whoami := func(c staffCall) (int, string) {
		c.method, c.path = "GET", "/staff/api/whoami"
		rec := c.do(t, h)
		return rec.Code, rec.Body.String()
	}
	alice, alice2, bob := login(t, h, "tok-alice"), login(t, h, "tok-alice"), login(t, h, "tok-bob")
	steps := []struct {
		name   string
		do     func()
		call   staffCall
		status int
		who    string
	}{
		{"session cookie", nil, staffCall{cookie: alice}, 200, "alice"},
		{"bearer token", nil, staffCall{bearer: "tok-bob"}, 200, "bob"},
		{"wrong bearer token", nil, staffCall{bearer: "nope"}, 401, ""},
		{"the token as a cookie", nil, staffCall{cookie: "tok-alice"}, 401, ""},
		{"made-up session", nil, staffCall{cookie: strings.Repeat("A", 43)}, 401, ""},
		{"nothing", nil, staffCall{}, 401, ""},
		{"signed out", func() { staffCall{method: "POST", path: "/staff/logout", cookie: alice}.do(t, h) },
			staffCall{cookie: alice}, 401, ""},
		{"other session of the same token lives on", nil, staffCall{cookie: alice2}, 200, "alice"},
		{"signing in again replaces the session", func() {
			rec := staffCall{method: "POST", path: "/staff/login", body: `{"token":"tok-alice"}`, cookie: alice2}.do(t, h)
			if rec.Code != 204 {
				t.Fatalf("login: %d", rec.Code)
			}
		}, staffCall{cookie: alice2}, 401, ""},
		{"token revoked: its sessions end", func() { owners.revoke("tok-bob") }, staffCall{cookie: bob}, 401, ""},
		{"token revoked: it stays ended", func() { owners.tokens["tok-bob"] = "bob" }, staffCall{cookie: bob}, 401, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.do != nil {
				s.do()
			}
			status, who := whoami(s.call)
			if status != s.status || (status == 200 && who != s.who) {
				t.Fatalf("whoami = %d %q, want %d %q", status, who, s.status, s.who)
			}
		})
	}
}

// Without staff sign-in configured, staff routes answer 503, not 401 or a panic.
func TestStaffNotConfigured(t *testing.T) {
	var auth *staff.Auth
	h := auth.Require(gateway.EncodeError, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("let through") }))
	for _, c := range []staffCall{{method: "GET", path: "/staff/api/orders", bearer: "tok"}, {method: "GET", path: "/staff/api/orders"}} {
		if rec := c.do(t, h); rec.Code != 503 {
			t.Errorf("%+v: %d, want 503", c, rec.Code)
		}
	}
	if rec := (staffCall{method: "POST", path: "/staff/login", body: `{"token":"tok"}`}).do(t, auth.Login(gateway.EncodeError)); rec.Code != 503 {
		t.Errorf("login: %d, want 503", rec.Code)
	}
}

// FuzzStaffLogin feeds POST /staff/login any body. Only a body holding exactly the valid token signs in;
// everything else is a 4xx JSON error without a cookie. Never a panic, never a 5xx.
func FuzzStaffLogin(f *testing.F) {
	for _, s := range []string{`{"token":"tok-alice"}`, `{"token":"tok-alice "}`, `{"Token":"tok-alice"}`, `{"token":"nope"}`,
		`{"token":"tok-alice","token":"tok-alice"}`, `{"token":["tok-alice"]}`, `{"token":null}`, `{}`, ``, `[]`,
		`{"token":"tok-al\u0069ce"}`, "{\"token\":\"tok-alice\"}\n", `{"token":"tok-alice"}{}`, "{\"token\":\"\xff\"}"} {
		f.Add(s)
	}
	h := newStaffHandler(&revocableOwners{tokens: map[string]string{"tok-alice": "alice"}}, &bytes.Buffer{})
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/staff/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		cookies := rec.Result().Cookies()
		if rec.Code == 204 {
			var req staff.LoginRequest
			if err := json.Unmarshal([]byte(body), &req); err != nil || req.Token != "tok-alice" || len(cookies) != 1 {
				t.Fatalf("signed in with %q (cookies %v)", body, cookies)
			}
			return
		}
		if rec.Code < 400 || rec.Code >= 500 || len(cookies) != 0 {
			t.Fatalf("%q: %d with cookies %v; want 4xx and no cookie", body, rec.Code, cookies)
		}
		var e map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"] == "" || e["code"] == "" {
			t.Fatalf("%q: %d with body %q, want the JSON error", body, rec.Code, rec.Body)
		}
	})
}
