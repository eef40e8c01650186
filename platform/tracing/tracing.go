// Package tracing sets up OpenTelemetry for a service: W3C trace context in and out of every HTTP call, and,
// when an OTLP endpoint is configured, spans exported to it (Jaeger here). Without an endpoint no span is
// recorded, but an incoming traceparent still flows through to the calls the request makes: a service with
// tracing off does not cut the traces of the ones around it.
package tracing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pizzajoint/mesh/platform/consulreg"
)

// Config is a service's tracing settings (ORDER_TRACE_ENDPOINT, GATEWAY_TRACE_SAMPLE, …).
type Config struct {
	// Endpoint is the OTLP/HTTP receiver's base URL; spans go to Endpoint/v1/traces.
	Endpoint string `conf:"help:OTLP/HTTP receiver for spans like http://127.0.0.1:4318 (empty: no spans exported)"`
	// Sample is the share of new traces recorded at the edge; a request that arrives with a sampled traceparent
	// is always recorded, so a trace is whole or absent, never cut in the middle.
	Sample float64 `conf:"default:1,help:share of new traces sampled from 0 to 1 (a caller's sampled traceparent is always followed)"`
	// Upstream names the mesh service that Endpoint reaches through the instance's sidecar (Compose: "jaeger" on
	// a local upstream port); empty when Endpoint is reached directly (the local stack's loopback).
	Upstream string `conf:"help:mesh service the endpoint is a sidecar upstream of, such as jaeger (empty: reached directly)"`
}

// Upstreams are the sidecar upstreams the span export needs: Upstream on Endpoint's local port, or none.
func (c Config) Upstreams() ([]consulreg.Upstream, error) {
	if c.Upstream == "" || c.Endpoint == "" {
		return nil, nil
	}
	up, err := consulreg.UpstreamAt(c.Upstream, c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("trace endpoint: %w", err)
	}
	// The sidecar's upstream listens on loopback: a remote host here means the setting is not what it says.
	if u, _ := url.Parse(c.Endpoint); u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" {
		return nil, fmt.Errorf("trace endpoint %q: an upstream of %s is a port on 127.0.0.1", c.Endpoint, c.Upstream)
	}
	return []consulreg.Upstream{up}, nil
}

// Tracer is the instrumentation scope of this project's own spans (store, Vault, events).
const Tracer = "github.com/pizzajoint/mesh"

// Start installs the process's propagator and tracer provider (otelhttp and the project's spans find them
// through the otel package, as the OpenTelemetry API intends) and returns the flush to run at shutdown.
func Start(ctx context.Context, service string, c Config, logger *slog.Logger) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	if c.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	if c.Sample < 0 || c.Sample > 1 {
		return nil, fmt.Errorf("trace sample %v: want 0 to 1", c.Sample)
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("trace endpoint %q: want http(s)://host:port", c.Endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()), otlptracehttp.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("trace exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(service))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.Sample))),
		sdktrace.WithBatcher(redacted{exp}),
		sdktrace.WithResource(res),
	)
	otel.SetTracerProvider(tp)
	// The exporter's failures (Jaeger away) are logged, never the request's: a trace is not worth an order.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing", "err", err) }))
	logger.Info("tracing on", "endpoint", u.String(), "sample", c.Sample)
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return errors.Join(tp.ForceFlush(ctx), tp.Shutdown(ctx))
	}, nil
}

// Server wraps a service's whole handler in a server span that continues the caller's trace. routes names the
// span after the mux pattern that serves the request ("POST /pizza"), never after its path, which holds IDs.
// public (the edge): an incoming traceparent is only linked, never continued, so no client on the internet
// chooses our trace IDs or forces every request of theirs to be sampled.
func Server(service string, public bool, routes *http.ServeMux, next http.Handler) http.Handler {
	named := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := routes.Handler(r); pattern != "" {
			span := trace.SpanFromContext(r.Context())
			span.SetName(pattern)
			span.SetAttributes(semconv.HTTPRoute(pattern))
		}
		next.ServeHTTP(w, r)
	})
	// Probes and scrapes come every few seconds and would bury the requests.
	opts := []otelhttp.Option{otelhttp.WithFilter(func(r *http.Request) bool {
		return !strings.HasPrefix(r.URL.Path, "/health/") && r.URL.Path != "/metrics"
	})}
	if public {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
	}
	return otelhttp.NewHandler(named, service, opts...)
}

// Client wraps an outgoing transport: a client span per call, and the traceparent header that carries the
// trace across the sidecars (Consul's built-in proxy is L4 and passes it through untouched).
func Client(next http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(inMemoryBody{next}, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		if r.Pattern != "" {
			return r.Pattern
		}
		return r.Method // the path holds order IDs: a name per order would make every span name unique
	}))
}

// maxInMemoryBody bounds the request bodies inMemoryBody copies: an order is a few hundred bytes, and a body
// past this goes on as it came.
const maxInMemoryBody = 64 << 10

// inMemoryBody gives the transport a request body it knows to be in memory, so that headers and body leave in
// one write. otelhttp wraps the body to count its bytes, which hides the caller's *bytes.Reader from net/http:
// the transport then flushes the headers on their own and copies the body in a second write, and through the
// mesh every order crosses both sidecars as two segments (two reads and two writes in each proxy instead of
// one; the gateway's profile showed the second write at 4.5% of its CPU). The copy is the body's own bytes,
// read through otelhttp's wrapper, which counts them as before.
type inMemoryBody struct{ next http.RoundTripper }

func (t inMemoryBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength <= 0 || r.ContentLength > maxInMemoryBody {
		return t.next.RoundTrip(r)
	}
	b := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, b)
	r.Body.Close() // a RoundTripper closes the body it was given, on errors too
	if err != nil {
		return nil, fmt.Errorf("reading the request body (%d bytes announced): %w", r.ContentLength, err)
	}
	sent := *r // a RoundTripper does not change its caller's request
	sent.Body = io.NopCloser(bytes.NewReader(b))
	return t.next.RoundTrip(&sent)
}

// Span starts a span of this project's own under ctx's span.
func Span(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return otel.Tracer(Tracer).Start(ctx, name, trace.WithAttributes(attrs...))
}

// End ends span, marking it failed when err is not nil (the error's text, which never holds PII here:
// the store and the Vault client wrap causes, not values).
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// TraceID returns ctx's trace ID in hex, or "" when ctx carries no valid span context.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// redacted keeps query strings out of exported spans: a stream's URL can carry a tracking token (EventSource
// clients cannot send headers), and otelhttp records a client call's whole URL. Server spans hold the path only.
type redacted struct{ sdktrace.SpanExporter }

func (e redacted) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	out := make([]sdktrace.ReadOnlySpan, len(spans))
	for i, s := range spans {
		out[i] = redact(s)
	}
	return e.SpanExporter.ExportSpans(ctx, out)
}

// redact returns s with every URL attribute's query removed (the keys too: ours, but next to the customer's values).
func redact(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	attrs := s.Attributes()
	var clean []attribute.KeyValue
	for i, kv := range attrs {
		if kv.Key != semconv.URLFullKey && kv.Key != semconv.URLQueryKey {
			continue
		}
		if clean == nil {
			clean = slices.Clone(attrs)
		}
		clean[i] = kv.Key.String("")
		if u, err := url.Parse(kv.Value.AsString()); kv.Key == semconv.URLFullKey && err == nil {
			u.RawQuery, u.Fragment = "", ""
			clean[i] = kv.Key.String(u.String())
		}
	}
	if clean == nil {
		return s
	}
	return redactedSpan{s, clean}
}

type redactedSpan struct {
	sdktrace.ReadOnlySpan
	attrs []attribute.KeyValue
}

func (s redactedSpan) Attributes() []attribute.KeyValue { return s.attrs }
