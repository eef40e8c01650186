package httpjson

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

var errGone = errors.New("gone")

type conflictError struct{ With string }

func (e *conflictError) Error() string { return "conflicts with " + e.With }

var table = ErrorTable{
	Kinds: []ErrorKind{
		RequestErrors("invalid"),
		Sentinel(errGone, http.StatusGone, "gone"),
		Typed(http.StatusConflict, "conflict",
			func(e *conflictError, a *ErrorAnswer) { a.Body.Field = e.With },
			func(a ErrorAnswer) error { return &conflictError{With: a.Body.Field} }),
	},
	Unknown: ErrorKind{Status: http.StatusInternalServerError, Code: "internal",
		Describe: func(_ error, a *ErrorAnswer) { a.Body.Error = "internal error" },
		Decode:   func(a ErrorAnswer) error { return fmt.Errorf("answered %d", a.Status) }},
}

func TestErrorTable(t *testing.T) {
	tests := []struct {
		name             string
		err              error
		status           int
		code, msg, field string
		header           string // Connection
		decoded          bool   // Decode makes it back
	}{
		{"sentinel, wrapped", fmt.Errorf("store: %w", errGone), 410, "gone", "store: gone", "", "", true},
		{"typed", fmt.Errorf("x: %w", &conflictError{With: "b"}), 409, "conflict", "x: conflicts with b", "b", "", true},
		{"request error with its status", &RequestError{Status: 415, Msg: "not JSON"}, 415, "invalid", "not JSON", "", "", false},
		{"body too large", &RequestError{Status: 413, Field: "", Msg: "big"}, 413, "invalid", "big", "", "close", false},
		{"unknown", errors.New("disk on fire"), 500, "internal", "internal error", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			table.Write(rec, tt.err, "req-1")
			want := fmt.Sprintf(`{"error":%q,"code":%q,`, tt.msg, tt.code)
			if tt.field != "" {
				want += fmt.Sprintf(`"field":%q,`, tt.field)
			}
			want += `"request_id":"req-1"}` + "\n"
			if rec.Code != tt.status || rec.Body.String() != want || rec.Header().Get("Connection") != tt.header {
				t.Errorf("answer %d %q (Connection %q), want %d %q (%q)", rec.Code, rec.Body.String(),
					rec.Header().Get("Connection"), tt.status, want, tt.header)
			}
			if got := table.Status(tt.err); got != tt.status {
				t.Errorf("Status = %d, want %d", got, tt.status)
			}
			a := table.Answer(tt.err)
			back := table.Decode(a)
			if table.Decoded(back) != tt.decoded || (tt.decoded && table.KindOf(back).Code != tt.code) {
				t.Errorf("decoded as %v (%T), want the %s kind back: %v", back, back, tt.code, tt.decoded)
			}
		})
	}
}
