// Package reqid gives every request an ID that travels from the edge through every service and into logs and
// error bodies, so one customer complaint can be followed across the mesh.
package reqid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Header carries the ID between services and back to the client.
const Header = "X-Request-ID"

type ctxKey struct{}

// FromContext returns the request's ID, or "" outside a request.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// New returns a fresh random ID.
func New() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Middleware adopts a well-formed incoming ID (or makes one), puts it in the request's context and echoes it
// in the response header. A new ID is the request's trace ID when it is traced, so the request_id of an error
// body is what Jaeger finds the trace by (/trace/<id>); an adopted one is recorded on the server span
// (request_id), which Jaeger's search by tag finds.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(Header)
		span := trace.SpanFromContext(r.Context())
		if !wellFormed(id) {
			id = New()
			if sc := span.SpanContext(); sc.IsValid() {
				id = sc.TraceID().String()
			}
		}
		span.SetAttributes(attribute.String("request_id", id))
		w.Header().Set(Header, id)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}

// wellFormed keeps client-chosen IDs short and free of anything that could forge a log line.
func wellFormed(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ToHTTPRequest copies the context's ID onto an outgoing request (a go-kit ClientBefore).
func ToHTTPRequest(ctx context.Context, r *http.Request) context.Context {
	if id := FromContext(ctx); id != "" {
		r.Header.Set(Header, id)
	}
	return ctx
}
