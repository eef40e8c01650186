package httpjson

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

type item struct {
	Pizza    string `json:"pizza"`
	Quantity int    `json:"quantity"`
}

type body struct {
	Customer struct {
		Name string `json:"name"`
	} `json:"customer"`
	Items  []item `json:"items"`
	Rush   bool   `json:"rush"`
	Secret string `json:"-"`
}

func request(contentType, b string) *http.Request {
	r := httptest.NewRequest("POST", "/", strings.NewReader(b))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func TestDecode(t *testing.T) {
	const valid = `{"customer":{"name":"Ada"},"items":[{"pizza":"margherita","quantity":2}]}`
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int // 0: decoded
		field       string
		msg         string
	}{
		{"valid", "application/json", valid, 0, "", ""},
		{"valid with charset", "application/json; charset=utf-8", valid, 0, "", ""},
		{"no content type", "", valid, 415, "", "Content-Type"},
		{"text/plain", "text/plain", valid, 415, "", "Content-Type"},
		{"empty", "application/json", ``, 400, "", "empty"},
		{"cut short", "application/json", `{"customer":{"name":"Ada"`, 400, "", "cut short"},
		{"malformed", "application/json", `{"customer":}`, 400, "customer", "malformed JSON"},
		{"two objects", "application/json", valid + valid, 400, "", "single JSON object"},
		{"trailing garbage", "application/json", valid + `x`, 400, "", "single JSON object"},
		{"array", "application/json", `[1]`, 400, "", "body must be an object, not an array"},
		{"unknown field", "application/json", `{"coupon":"FREE"}`, 400, "coupon", "unknown field"},
		{"nested unknown field", "application/json", `{"customer":{"name":"Ada","email":"a@b"}}`, 400, "customer.email", "unknown field"},
		{"field in another case", "application/json", `{"customer":{"Name":"Ada"}}`, 400, "customer.Name", "unknown field"},
		{"name and Name", "application/json", `{"customer":{"name":"x","Name":"y"}}`, 400, "customer.Name", "unknown field"},
		{"duplicate field", "application/json", `{"customer":{"name":"x","name":"y"}}`, 400, "customer.name", "duplicate field"},
		{"duplicate object", "application/json", `{"rush":true,"rush":false}`, 400, "rush", "duplicate field"},
		{"ignored field by its Go name", "application/json", `{"Secret":"x"}`, 400, "Secret", "unknown field"},
		{"wrong type", "application/json", `{"items":[{"quantity":"2"}]}`, 400, "items[0].quantity", "must be a number, not a string"},
		{"wrong type later item", "application/json", `{"items":[{"quantity":1},{"quantity":true}]}`, 400, "items[1].quantity", "must be a number, not true or false"},
		{"fraction", "application/json", `{"items":[{"quantity":2.5}]}`, 400, "items[0].quantity", "out of range"},
		{"huge number", "application/json", `{"items":[{"quantity":1e400}]}`, 400, "items[0].quantity", "out of range"},
		{"invalid UTF-8", "application/json", "{\"customer\":{\"name\":\"\xff\"}}", 400, "customer.name", "malformed JSON"},
		{"body over the limit, no length", "application/json", `{"customer":{"name":"` + strings.Repeat("x", 2000) + `"}}`, 413, "", "larger than 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(tt.contentType, tt.body)
			if tt.status == 413 {
				r.ContentLength = -1 // chunked: only the reader's limit can catch it
			}
			var v body
			err := Decode(r, 1024, &v)
			if tt.status == 0 {
				if err != nil || v.Customer.Name != "Ada" || v.Items[0].Quantity != 2 {
					t.Fatalf("Decode = %v, %+v; want Ada with 2", err, v)
				}
				return
			}
			re, ok := err.(*RequestError)
			if !ok {
				t.Fatalf("Decode = %v (%T), want a *RequestError", err, err)
			}
			if re.Status != tt.status || re.Field != tt.field || !strings.Contains(re.Msg, tt.msg) {
				t.Errorf("Decode = %d %q %q, want %d %q containing %q", re.Status, re.Field, re.Msg, tt.status, tt.field, tt.msg)
			}
		})
	}
}

// readCounter reports whether anyone read the body.
type readCounter struct{ n int }

func (c *readCounter) Read([]byte) (int, error) { c.n++; return 0, io.EOF }

// A declared Content-Length over the limit is refused before the body is touched: reading it is what makes
// net/http send 100 Continue.
func TestDecode_refusesFromContentLength(t *testing.T) {
	tests := []struct {
		name    string
		length  int64
		status  int
		mayRead bool
	}{
		{"over the limit", 1025, 413, false},
		{"far over the limit", 3 << 20, 413, false},
		{"at the limit", 1024, 400, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &readCounter{}
			r := httptest.NewRequest("POST", "/", body)
			r.Header.Set("Content-Type", "application/json")
			r.ContentLength = tt.length
			err := Decode(r, 1024, &struct{}{})
			re, ok := err.(*RequestError)
			if !ok || re.Status != tt.status {
				t.Fatalf("Decode = %v, want status %d", err, tt.status)
			}
			if !tt.mayRead && body.n > 0 {
				t.Errorf("body was read %d times before refusing it", body.n)
			}
		})
	}
}

func TestFieldName(t *testing.T) {
	tests := []struct{ pointer, want string }{
		{"", ""},
		{"/coupon", "coupon"},
		{"/items/0/size", "items[0].size"},
		{"/items/12", "items[12]"},
		{"/customer/a~1b", "customer.a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.pointer, func(t *testing.T) {
			if got := FieldName(pointer(tt.pointer)); got != tt.want {
				t.Errorf("FieldName(%q) = %q, want %q", tt.pointer, got, tt.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := Write(rec, 418, ErrorBody{Error: "short and stout", Code: "teapot", RequestID: "r1"}); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 418 || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" ||
		rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("Write: %d %v", rec.Code, rec.Header())
	}
	if want := `{"error":"short and stout","code":"teapot","request_id":"r1"}` + "\n"; rec.Body.String() != want {
		t.Errorf("body = %q, want %q", rec.Body.String(), want)
	}
}

func pointer(s string) jsontext.Pointer { return jsontext.Pointer(s) }
