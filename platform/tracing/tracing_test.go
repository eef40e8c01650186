package tracing

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pizzajoint/mesh/platform/consulreg"
	"github.com/pizzajoint/mesh/platform/reqid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// record installs a provider that keeps every ended span, as Start would with an endpoint (same processors).
func record(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(redacted{exp})))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return exp
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(spans))
	return tracetest.SpanStub{}
}

// An edge and a backend: the edge's handler calls the backend through Client, as the gateway calls order.
func TestOneTraceAcrossAHop(t *testing.T) {
	exp := record(t)
	backMux := http.NewServeMux()
	var backendRequestID string
	backMux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		backendRequestID = reqid.FromContext(r.Context())
		io.WriteString(w, "ok")
	})
	backend := httptest.NewServer(Server("order", false, backMux, reqid.Middleware(backMux)))
	defer backend.Close()

	client := &http.Client{Transport: Client(http.DefaultTransport)}
	edgeMux := http.NewServeMux()
	edgeMux.HandleFunc("GET /pizza/{id}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, backend.URL+"/orders/"+r.PathValue("id")+"?token=secret-token", nil)
		reqid.ToHTTPRequest(r.Context(), req)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
	})
	edge := httptest.NewServer(Server("gateway", true, edgeMux, reqid.Middleware(edgeMux)))
	defer edge.Close()

	req, _ := http.NewRequest(http.MethodGet, edge.URL+"/pizza/o-1", nil)
	// A client's own traceparent, sampled: the public edge must not continue it.
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	requestID := resp.Header.Get(reqid.Header)

	spans := exp.GetSpans()
	edgeSpan := spanNamed(t, spans, "GET /pizza/{id}")
	clientSpan := spanNamed(t, spans, "GET")
	backSpan := spanNamed(t, spans, "GET /orders/{id}")
	traceID := edgeSpan.SpanContext.TraceID()
	if traceID.String() == "0af7651916cd43dd8448eb211c80319c" {
		t.Error("the public edge continued the client's trace")
	}
	if clientSpan.SpanContext.TraceID() != traceID || backSpan.SpanContext.TraceID() != traceID {
		t.Errorf("traces: edge %s, client %s, backend %s; want one", traceID, clientSpan.SpanContext.TraceID(), backSpan.SpanContext.TraceID())
	}
	if clientSpan.Parent.SpanID() != edgeSpan.SpanContext.SpanID() || backSpan.Parent.SpanID() != clientSpan.SpanContext.SpanID() {
		t.Errorf("parents: client's %s (edge %s), backend's %s (client %s)", clientSpan.Parent.SpanID(),
			edgeSpan.SpanContext.SpanID(), backSpan.Parent.SpanID(), clientSpan.SpanContext.SpanID())
	}
	if requestID != traceID.String() || backendRequestID != requestID {
		t.Errorf("request IDs: edge answered %q, backend saw %q; want the trace ID %s", requestID, backendRequestID, traceID)
	}
	for _, s := range spans {
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "secret-token") {
				t.Errorf("span %q attribute %s = %q", s.Name, kv.Key, kv.Value.Emit())
			}
		}
	}
}

func TestStartOff(t *testing.T) {
	flush, err := Start(context.Background(), "order", Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := flush(context.Background()); err != nil {
		t.Error(err)
	}
	_, span := Span(context.Background(), "x")
	defer span.End()
	if span.IsRecording() {
		t.Error("a span was recorded with tracing off")
	}
}

func TestStartRefusesBadSettings(t *testing.T) {
	for name, c := range map[string]Config{
		"sample above 1":  {Endpoint: "http://127.0.0.1:4318", Sample: 1.5},
		"no scheme":       {Endpoint: "127.0.0.1:4318", Sample: 1},
		"negative sample": {Endpoint: "http://127.0.0.1:4318", Sample: -0.1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Start(context.Background(), "order", c, nil); err == nil {
				t.Errorf("Start accepted %+v", c)
			}
		})
	}
}

// writeCounter counts the writes on a connection: one request, one write.
type writeCounter struct {
	net.Conn
	writes *atomic.Int32
}

func (c writeCounter) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// A call through Client leaves in one write, headers and body together, and the body arrives whole: through the
// mesh, each write is a segment both sidecars read and write again.
func TestClientSendsARequestInOneWrite(t *testing.T) {
	record(t)
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer srv.Close()
	var writes atomic.Int32
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return writeCounter{c, &writes}, err
	}}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: Client(base)}

	for _, body := range []string{`{"customer":{"name":"Ada"},"items":[{"pizza":"margherita","size":"large","quantity":1}]}`, ""} {
		writes.Store(0)
		req, err := http.NewRequest("POST", srv.URL+"/orders", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if b := <-got; b != body {
			t.Errorf("the server read %q, want %q", b, body)
		}
		if n := writes.Load(); n != 1 {
			t.Errorf("a request with a %d-byte body took %d writes, want 1", len(body), n)
		}
	}
}

// Spans exported through the mesh register the upstream on the endpoint's local port; reached directly, none.
func TestUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name, endpoint, upstream string
		want                     []consulreg.Upstream
		wantErr                  bool
	}{
		{name: "direct", endpoint: "http://127.0.0.1:4318"},
		{name: "off", upstream: "jaeger"},
		{name: "through the sidecar", endpoint: "http://127.0.0.1:4318", upstream: "jaeger",
			want: []consulreg.Upstream{{Service: "jaeger", LocalPort: 4318}}},
		{name: "localhost", endpoint: "http://localhost:14318/", upstream: "jaeger",
			want: []consulreg.Upstream{{Service: "jaeger", LocalPort: 14318}}},
		{name: "no port", endpoint: "http://127.0.0.1", upstream: "jaeger", wantErr: true},
		{name: "not local", endpoint: "http://jaeger:4318", upstream: "jaeger", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Config{Endpoint: tc.endpoint, Upstream: tc.upstream}.Upstreams()
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("Upstreams() = %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
