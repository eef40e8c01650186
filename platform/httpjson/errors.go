package httpjson

import (
	"errors"
	"net/http"
)

// ErrorKind is one row of a service's error table: the errors it covers, the status and code they are
// answered with, and how a client makes the error back from the answer.
type ErrorKind struct {
	Status int
	Code   string
	// Match reports whether err is of this kind.
	Match func(err error) bool
	// Describe, when set, fills in the answer beyond the defaults (err.Error() as the message, Status, Code):
	// a field, a header, or a status the error carries itself.
	Describe func(err error, a *ErrorAnswer)
	// Decode, when set, makes the error back from an answer with this code; the service's client uses it.
	Decode func(a ErrorAnswer) error
}

// ErrorAnswer is an error response: its status, its headers and its body.
type ErrorAnswer struct {
	Status int
	Header http.Header
	Body   ErrorBody
}

// ErrorTable maps a service's errors to its answers, and answers back to errors. The encoder, the client's
// decoder and the log and metric outcome all read it, so they cannot disagree.
type ErrorTable struct {
	// Kinds are tried in order: the first that matches an error is its kind.
	Kinds []ErrorKind
	// Unknown is the kind of an error no row matches, and decodes a code no row decodes.
	Unknown ErrorKind
}

// KindOf returns the kind of err.
func (t ErrorTable) KindOf(err error) ErrorKind {
	for _, k := range t.Kinds {
		if k.Match(err) {
			return k
		}
	}
	return t.Unknown
}

// Answer is what err is answered with (without a request ID).
func (t ErrorTable) Answer(err error) ErrorAnswer {
	k := t.KindOf(err)
	a := ErrorAnswer{Status: k.Status, Header: http.Header{}, Body: ErrorBody{Error: err.Error(), Code: k.Code}}
	if k.Describe != nil {
		k.Describe(err, &a)
	}
	return a
}

// Status is the HTTP status err is answered with.
func (t ErrorTable) Status(err error) int { return t.Answer(err).Status }

// Write answers err, its body carrying requestID.
func (t ErrorTable) Write(w http.ResponseWriter, err error, requestID string) {
	a := t.Answer(err)
	for k, v := range a.Header {
		w.Header()[k] = v
	}
	a.Body.RequestID = requestID
	_ = Write(w, a.Status, a.Body)
}

// Decode makes the error an answer stands for: the first row with its code and a Decode, else Unknown's.
func (t ErrorTable) Decode(a ErrorAnswer) error {
	for _, k := range t.Kinds {
		if k.Code == a.Body.Code && k.Decode != nil {
			return k.Decode(a)
		}
	}
	return t.Unknown.Decode(a)
}

// Decoded reports whether err is of a kind Decode makes, that is an answer of the service rather than a
// failure to reach it.
func (t ErrorTable) Decoded(err error) bool {
	for _, k := range t.Kinds {
		if k.Decode != nil && k.Match(err) {
			return true
		}
	}
	return false
}

// Sentinel is the row of a sentinel error (matched with errors.Is): answered with its own message, and
// decoded back to itself.
func Sentinel(sentinel error, status int, code string) ErrorKind {
	return ErrorKind{Status: status, Code: code,
		Match:  func(err error) bool { return errors.Is(err, sentinel) },
		Decode: func(ErrorAnswer) error { return sentinel }}
}

// Typed is the row of an error type E (matched with errors.As). describe fills in the answer from the E
// (nil: its message only); decode makes an E back from the answer (nil: clients do not decode it).
func Typed[E error](status int, code string, describe func(e E, a *ErrorAnswer), decode func(a ErrorAnswer) error) ErrorKind {
	k := ErrorKind{Status: status, Code: code, Decode: decode,
		Match: func(err error) bool { _, ok := errors.AsType[E](err); return ok }}
	if describe != nil {
		k.Describe = func(err error, a *ErrorAnswer) {
			e, _ := errors.AsType[E](err)
			describe(e, a)
		}
	}
	return k
}

// RequestErrors is the row of *RequestError, a request the server could not read: answered with the status
// the error carries and code, naming the field.
func RequestErrors(code string) ErrorKind {
	return Typed(http.StatusBadRequest, code, func(e *RequestError, a *ErrorAnswer) {
		a.Status, a.Body.Field, a.Body.Error = e.Status, e.Field, e.Msg
		if e.Status == http.StatusRequestEntityTooLarge {
			// The refused body may still be on its way: close after answering, so it is never read as the
			// next request and the client sees the 413 rather than a reset mid-upload.
			a.Header.Set("Connection", "close")
		}
	}, nil)
}
