// Package httpjson reads JSON request bodies strictly and writes JSON responses, so that every bad body
// gets the same clear 4xx answer in every service. An ErrorTable maps a service's errors to its answers.
package httpjson

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// RequestError is a request that cannot be used (bad body, unknown path); Status is the HTTP status to answer.
type RequestError struct {
	Status int
	Field  string
	Msg    string
}

func (e *RequestError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

// Decode reads one JSON object of at most maxBytes from r into v. It insists on Content-Type
// application/json; names are matched case-sensitively, unknown and duplicate names are refused, as is
// trailing data and invalid UTF-8; the offending field is named where it can be.
//
// A body whose Content-Length is over maxBytes is refused before a byte of it is read, so a client that
// sent Expect: 100-continue gets 413 instead of 100 Continue (net/http sends that on the first read).
func Decode(r *http.Request, maxBytes int64, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &RequestError{Status: http.StatusUnsupportedMediaType, Msg: "Content-Type must be application/json"}
	}
	if r.ContentLength > maxBytes {
		return tooLarge(maxBytes)
	}
	// encoding/json/v2 semantics: case-sensitive names, duplicates and invalid UTF-8 refused by default.
	err := jsonv2.UnmarshalRead(http.MaxBytesReader(nil, r.Body, maxBytes), v, jsonv2.RejectUnknownMembers(true))
	if err != nil {
		return decodeError(err, maxBytes)
	}
	return nil
}

func tooLarge(maxBytes int64) *RequestError {
	return &RequestError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body is larger than %d bytes", maxBytes)}
}

func decodeError(err error, maxBytes int64) error {
	var (
		big      *http.MaxBytesError
		syntax   *jsontext.SyntacticError
		semantic *jsonv2.SemanticError
		bad      = http.StatusBadRequest
	)
	switch {
	case errors.As(err, &big):
		return tooLarge(maxBytes)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &RequestError{Status: bad, Msg: "body is empty or cut short"}
	case errors.As(err, &syntax):
		field := FieldName(syntax.JSONPointer)
		switch {
		case errors.Is(syntax.Err, jsontext.ErrDuplicateName):
			return &RequestError{Status: bad, Field: field, Msg: "duplicate field"}
		case strings.Contains(syntax.Error(), "after top-level value"):
			// The message is the only mark of trailing data; tests pin it.
			return &RequestError{Status: bad, Msg: "body must hold a single JSON object"}
		}
		return &RequestError{Status: bad, Field: field, Msg: fmt.Sprintf("malformed JSON at byte %d", syntax.ByteOffset)}
	case errors.As(err, &semantic):
		field := FieldName(semantic.JSONPointer)
		switch {
		case errors.Is(semantic.Err, jsonv2.ErrUnknownName):
			return &RequestError{Status: bad, Field: field, Msg: "unknown field"}
		case semantic.GoType == nil:
			return &RequestError{Status: bad, Field: field, Msg: "malformed JSON"}
		}
		want, got := goTypeName(semantic.GoType.Kind().String()), jsonKindName(semantic.JSONKind)
		switch {
		case field == "":
			return &RequestError{Status: bad, Msg: fmt.Sprintf("body must be %s, not %s", want, got)}
		case want == got:
			return &RequestError{Status: bad, Field: field, Msg: fmt.Sprintf("%s out of range", want)}
		}
		return &RequestError{Status: bad, Field: field, Msg: fmt.Sprintf("must be %s, not %s", want, got)}
	default:
		return &RequestError{Status: bad, Msg: "malformed JSON"}
	}
}

// FieldName turns a JSON pointer (/items/0/size) into the field names used in error bodies (items[0].size).
func FieldName(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.ParseUint(tok, 10, 64); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

func goTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	default:
		return "an object"
	}
}

func jsonKindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "true or false"
	case '[':
		return "an array"
	case 'n':
		return "null"
	default:
		return "an object"
	}
}

// Write answers with status and v as JSON, written by the same library (JSON v2) that reads the other side's
// bodies. Deterministic: map keys in order, so equal answers are equal bytes. A nil slice is [] (v2), never null.
func Write(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if err := jsonv2.MarshalWrite(w, v, jsonv2.Deterministic(true)); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ErrorBody is the JSON every error response carries.
type ErrorBody struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
	// From and To name the statuses of a refused status change.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}
