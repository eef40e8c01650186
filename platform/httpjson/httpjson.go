// Package httpjson reads JSON request bodies strictly and writes JSON responses, so that every bad body
// gets the same clear 4xx answer in every service.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
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
// application/json, rejects unknown fields and trailing data, and names the offending field where it can.
func Decode(r *http.Request, maxBytes int64, v any) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &RequestError{Status: http.StatusUnsupportedMediaType, Msg: "Content-Type must be application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, maxBytes)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return decodeError(err, maxBytes)
		}
		return &RequestError{Status: http.StatusBadRequest, Msg: "body must hold a single JSON object"}
	}
	return nil
}

func decodeError(err error, maxBytes int64) error {
	var (
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		tooLarge  *http.MaxBytesError
		bad       = http.StatusBadRequest
		unknownFx = "json: unknown field "
	)
	switch {
	case errors.As(err, &tooLarge):
		return &RequestError{Status: http.StatusRequestEntityTooLarge, Msg: fmt.Sprintf("body is larger than %d bytes", maxBytes)}
	case errors.As(err, &syntax):
		return &RequestError{Status: bad, Msg: fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &RequestError{Status: bad, Msg: "body is empty or cut short"}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &RequestError{Status: bad, Msg: fmt.Sprintf("body must be a JSON object, not %s", typ.Value)}
		}
		return &RequestError{Status: bad, Field: typ.Field, Msg: fmt.Sprintf("must be %s, not %s", jsonType(typ.Type.Kind().String()), typ.Value)}
	case strings.HasPrefix(err.Error(), unknownFx):
		// encoding/json has no typed error for this; its message is stable and documented by tests.
		return &RequestError{Status: bad, Field: strings.Trim(strings.TrimPrefix(err.Error(), unknownFx), `"`), Msg: "unknown field"}
	default:
		return &RequestError{Status: bad, Msg: "malformed JSON"}
	}
}

func jsonType(goKind string) string {
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

// Write answers with status and v as JSON.
func Write(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
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
