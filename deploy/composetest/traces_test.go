package composetest

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// tracesUI is the trace UI's address on the host (published on 127.0.0.1 only).
func (s *stack) tracesUI() string { return fmt.Sprintf("https://localhost:%d", s.tracesPort) }

// tracesClient fetches the operators' client certificate the README's way (`make docker-traces-cert`, beside the
// CA file) and returns a client that presents it and verifies the UI against the stack's CA.
func tracesClient(t *testing.T) *http.Client {
	t.Helper()
	st.cmdT(t, "make", "-s", "docker-traces-cert")
	stem := filepath.Join(filepath.Dir(st.caFile), "docker-traces-operator")
	for _, f := range []string{stem + ".pem", stem + "-key.pem"} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want the caller's alone (0600)", f, err, info.Mode())
		}
	}
	cert, err := tls.LoadX509KeyPair(stem+".pem", stem+"-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	tr := st.http.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: 15 * time.Second, Transport: tr}
}

// One POST /pizza through the Compose mesh is one trace in Jaeger, with the gateway's server span, its client
// span, order's server span and the store's span each the child of the one before. Both services export their
// spans to their sidecar's upstream "jaeger", so the trace arrived over the mesh's mTLS; it is read over the trace
// UI's TLS with the operators' client certificate. Seen red with ORDER_TRACE_UPSTREAM unset (order's spans had
// no way to Jaeger; Consul's built-in proxy keeps a removed upstream's listener until it restarts).
func TestTraceOfAnOrderThroughTheComposeMesh(t *testing.T) {
	code, p, err := placeOrder(runPrefix("trace"))
	if err != nil || code != http.StatusCreated || len(p.RequestID) != 32 {
		t.Fatalf("POST /pizza = %d, request ID %q, %v; want 201 and a trace ID", code, p.RequestID, err)
	}
	jaeger := testkit.Jaeger{URL: st.tracesUI(), Client: tracesClient(t)}
	testkit.CheckOrderTrace(t, jaeger.OrderTrace(t, p.RequestID))
}

// Jaeger has no login, so the trace UI asks for a client certificate from a CA of its own: a caller on the host
// without one is refused, and so is a container on the Compose network (which reaches the pod's address and the
// UI's port directly) holding the stack's CA. The OTLP receiver listens on the pod's loopback only: no container
// sends spans but through the sidecars, where intentions let gateway and order alone.
func TestTraceUIAndReceiverRefuseOthers(t *testing.T) {
	if _, err := tracesClient(t).Get(st.tracesUI() + "/api/services"); err != nil {
		t.Fatalf("the control: with the operators' certificate the trace UI does not answer: %v", err)
	}
	if resp, err := st.http.Get(st.tracesUI() + "/api/services"); err == nil {
		resp.Body.Close()
		t.Errorf("the trace UI answered a caller without a client certificate: %s", resp.Status)
	} else if !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("the trace UI without a client certificate: %v; want a TLS refusal (certificate required)", err)
	}
	// From the gateway's container: the UI's port answers TLS (its certificate is not checked here, so the refusal
	// is the missing client certificate's), the receiver and the health endpoint are not on the pod's address.
	for target, want := range map[string]string{
		"https://jaeger-pod:16686/api/services": "certificate required",
		"http://jaeger-pod:4318/v1/traces":      "connection refused",
		"http://jaeger-pod:13133/status":        "connection refused",
	} {
		err := probeFrom("gateway", "gateway", "-insecure", target)
		if err == nil {
			t.Errorf("the gateway's container reached %s without the mesh", target)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", target, err, want)
		}
	}
}
