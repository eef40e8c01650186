package consulfront

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentStandIn answers for the Consul agent and routes the way the agent does: an http.ServeMux with the leaf
// endpoint registered under Consul's pattern (agent/http_register.go) and the service name read as Consul reads
// it (strings.TrimPrefix(req.URL.Path, "/v1/agent/connect/ca/leaf/"), agent/agent_endpoint.go). It records
// every request that reaches it, before its mux routes (or redirects) it, and every service it would issue a
// leaf certificate (and private key) for.
type agentStandIn struct {
	mu     sync.Mutex
	seen   []received
	issued []string
}

// received is one request as the agent received it.
type received struct {
	Method string
	URI    string // the request target, as the front sent it
}

func newAgent(t *testing.T) (*agentStandIn, *httptest.Server) {
	a := &agentStandIn{}
	mux := http.NewServeMux()
	mux.HandleFunc(leafPrefix, func(w http.ResponseWriter, r *http.Request) {
		svc := strings.TrimPrefix(r.URL.Path, leafPrefix)
		a.mu.Lock()
		a.issued = append(a.issued, svc)
		a.mu.Unlock()
		_, _ = io.WriteString(w, "leaf and private key of "+svc)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "from the agent") })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, received{Method: r.Method, URI: r.RequestURI})
		a.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return a, srv
}

// take returns what reached the agent, and the leaves it issued, since the last take.
func (a *agentStandIn) take() (seen []received, issued []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen, issued = a.seen, a.issued
	a.seen, a.issued = nil, nil
	return seen, issued
}

// newFront serves Handler for leafFor in front of a fresh agent stand-in.
func newFront(t *testing.T, leafFor string, hsts bool) (*agentStandIn, *httptest.Server) {
	t.Helper()
	agent, agentSrv := newAgent(t)
	h, err := Handler(agentSrv.URL, leafFor, hsts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return agent, front
}

// send writes one request with its method and target exactly as given (no client cleans or re-encodes them)
// and returns the answer's status and headers.
func send(t *testing.T, addr, method, target string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: consul\r\nConnection: close\r\n\r\n", method, target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// frontCase is one request through a front and what must come of it.
type frontCase struct {
	name   string
	method string // GET when empty
	target string // the request target, sent as written
	status int    // the caller's answer
	// reached is the request target the agent receives; "" when the request must never reach it.
	reached string
	// leaf is the service the agent issues a leaf certificate for; "" for none.
	leaf string
}

// run sends each case through the front and checks what reached the agent. A refusal is proven by the agent
// never seeing the request; whatever passes, the agent issues no leaf but leafFor's.
func run(t *testing.T, leafFor string, cases []frontCase) {
	t.Helper()
	agent, front := newFront(t, leafFor, false)
	addr := strings.TrimPrefix(front.URL, "http://")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			resp := send(t, addr, method, tc.target)
			seen, issued := agent.take()
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s: status %d; want %d", method, tc.target, resp.StatusCode, tc.status)
			}
			for _, svc := range issued {
				if svc != leafFor {
					t.Errorf("%s %s: the agent issued the leaf of %q (it saw %+v)", method, tc.target, svc, seen)
				}
			}
			if tc.reached == "" {
				if len(seen) != 0 {
					t.Fatalf("%s %s: refused, yet the agent saw %+v", method, tc.target, seen)
				}
				return
			}
			if len(seen) != 1 {
				t.Fatalf("%s %s: the agent saw %+v; want one request for %s", method, tc.target, seen, tc.reached)
			}
			if got := seen[0]; got.URI != tc.reached || got.Method != method {
				t.Errorf("%s %s: the agent saw %s %s; want %s %s", method, tc.target, got.Method, got.URI, method, tc.reached)
			}
			var want []string
			if tc.leaf != "" {
				want = []string{tc.leaf}
			}
			if !slices.Equal(issued, want) {
				t.Errorf("%s %s: the agent issued leaves %q; want %q", method, tc.target, issued, tc.leaf)
			}
		})
	}
}

// A service's front passes its own service's leaf, in whatever spelling reaches the agent as that leaf, and every
// path that is no leaf; it refuses every other spelling that the agent would read as a leaf of another service.
// What the front checks is the path the agent reads: percent-decoded once, dot segments and doubled slashes
// removed, exactly what it forwards.
func TestServiceFrontPaths(t *testing.T) {
	const own = "/v1/agent/connect/ca/leaf/order"
	run(t, "order", []frontCase{
		// Passed: its own leaf, however spelled, reaches the agent as the one canonical path.
		{name: "own leaf", target: own, status: 200, reached: own, leaf: "order"},
		{name: "own leaf, query kept", target: own + "?index=7&wait=1s", status: 200, reached: own + "?index=7&wait=1s", leaf: "order"},
		{name: "own leaf, query that looks like a path", target: own + "?/../gateway", status: 200, reached: own + "?/../gateway", leaf: "order"},
		{name: "own leaf, dot-dot back into leaf", target: "/v1/agent/connect/ca/leaf/../leaf/order", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, doubled slash", target: "/v1/agent/connect/ca//leaf/order", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, dot segment", target: "/v1/agent/connect/ca/./leaf/order", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, trailing dot segment", target: own + "/.", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, encoded letter", target: "/v1/agent/connect/ca/leaf/%6Frder", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, encoded slashes", target: "/v1/agent/connect/ca%2Fleaf%2forder", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, encoded ? then dot-dot", target: "/v1/agent/connect/ca/leaf/gateway%3F/../order", status: 200, reached: own, leaf: "order"},
		{name: "own leaf, absolute form", target: "http://elsewhere" + own, status: 200, reached: own, leaf: "order"},
		{name: "own leaf, POST", method: "POST", target: own, status: 200, reached: own, leaf: "order"},
		{name: "own leaf, CONNECT", method: "CONNECT", target: own, status: 200, reached: own, leaf: "order"},

		// Passed: not a leaf at all.
		{name: "roots", target: "/v1/agent/connect/ca/roots", status: 200, reached: "/v1/agent/connect/ca/roots"},
		{name: "catalog", target: "/v1/catalog/services", status: 200, reached: "/v1/catalog/services"},
		// The agent's mux redirects these to the leaf folder, which the front then refuses ("no service").
		{name: "leaf folder without its slash", target: "/v1/agent/connect/ca/leaf", status: 307, reached: "/v1/agent/connect/ca/leaf"},
		{name: "dot-dot out of the leaf folder", target: own + "/..", status: 307, reached: "/v1/agent/connect/ca/leaf"},
		// The agent's mux matches case as written: a case variant of the prefix is routed to no leaf.
		{name: "upper-case prefix", target: "/V1/agent/connect/ca/leaf/gateway", status: 200, reached: "/V1/agent/connect/ca/leaf/gateway"},
		{name: "upper-case leaf folder", target: "/v1/agent/connect/ca/LEAF/gateway", status: 200, reached: "/v1/agent/connect/ca/LEAF/gateway"},
		// Decoded once, as the agent decodes: %252F stays an encoded slash inside one segment, not a leaf path.
		{name: "double-encoded slashes", target: "/v1/agent/connect/ca%252Fleaf%252Fgateway", status: 200,
			reached: "/v1/agent/connect/ca%252Fleaf%252Fgateway"},

		// Refused: another service's leaf in every spelling; the agent never sees them.
		{name: "other leaf", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, query", target: "/v1/agent/connect/ca/leaf/gateway?index=1", status: 403},
		{name: "other leaf, query naming own", target: "/v1/agent/connect/ca/leaf/gateway?service=order", status: 403},
		{name: "other leaf, trailing slash", target: "/v1/agent/connect/ca/leaf/gateway/", status: 403},
		{name: "other leaf, dot-dot", target: "/v1/agent/connect/ca/leaf/../leaf/gateway", status: 403},
		{name: "other leaf, dot-dot from own", target: own + "/../gateway", status: 403},
		{name: "other leaf, dot-dot from own, trailing slash", target: own + "/../gateway/", status: 403},
		{name: "other leaf, dot-dot from the root", target: "/x/../../v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, doubled leading slash", target: "//v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, tripled leading slash", target: "///v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, doubled slash in leaf folder", target: "/v1/agent/connect/ca//leaf/gateway", status: 403},
		{name: "other leaf, doubled slash in v1", target: "/v1//agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, doubled slash before name", target: "/v1/agent/connect/ca/leaf//gateway", status: 403},
		{name: "other leaf, dot segment", target: "/v1/agent/connect/./ca/leaf/gateway", status: 403},
		{name: "other leaf, dot segment before name", target: "/v1/agent/connect/ca/leaf/./gateway", status: 403},
		{name: "other leaf, trailing dot segment", target: "/v1/agent/connect/ca/leaf/gateway/.", status: 403},
		{name: "other leaf, encoded letter", target: "/v1/agent/connect/ca/leaf/gatew%61y", status: 403},
		{name: "other leaf, encoded slash", target: "/v1/agent/connect/ca/leaf%2Fgateway", status: 403},
		{name: "other leaf, encoded slash lower case", target: "/v1/agent/connect/ca/leaf%2fgateway", status: 403},
		{name: "other leaf, encoded slashes after root", target: "/v1%2Fagent%2Fconnect%2Fca%2Fleaf%2Fgateway", status: 403},
		{name: "other leaf, encoded dot-dot from own", target: own + "%2F..%2Fgateway", status: 403},
		{name: "other leaf, encoded dots", target: own + "/%2E%2E/gateway", status: 403},
		{name: "other leaf, encoded dots lower case", target: own + "/%2e%2e/gateway", status: 403},
		{name: "other leaf, encoded ? from own", target: own + "%3F/../gateway", status: 403},
		{name: "other leaf, double-encoded dot-dot from own", target: own + "%252F..%252Fgateway", status: 403},
		{name: "other leaf, upper case name", target: "/v1/agent/connect/ca/leaf/GATEWAY", status: 403},
		{name: "own leaf, upper case name", target: "/v1/agent/connect/ca/leaf/Order", status: 403},
		{name: "own leaf, trailing slash", target: own + "/", status: 403},
		{name: "own name with a suffix", target: own + "-admin", status: 403},
		{name: "own name, then semicolon", target: own + ";gateway", status: 403},
		{name: "own name, then backslashes", target: own + `\..\gateway`, status: 403},
		{name: "no service", target: "/v1/agent/connect/ca/leaf/", status: 403},
		{name: "no service, dot-dot", target: own + "/../", status: 403},
		{name: "other leaf, absolute form", target: "http://consul/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, absolute form with dot-dot", target: "http://consul" + own + "/../gateway", status: 403},
		{name: "other leaf, HEAD", method: "HEAD", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, POST", method: "POST", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, PUT", method: "PUT", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, DELETE", method: "DELETE", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, OPTIONS", method: "OPTIONS", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, lower-case method", method: "get", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, CONNECT", method: "CONNECT", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "other leaf, CONNECT with dot-dot", method: "CONNECT", target: own + "/../gateway", status: 403},
		// Not a path at all: the front's server refuses them before the handler, or sends them to the UI.
		{name: "no leading slash", target: "v1/agent/connect/ca/leaf/gateway", status: 400},
		{name: "encoded leading slash", target: "%2Fv1%2Fagent%2Fconnect%2Fca%2Fleaf%2Fgateway", status: 400},
		{name: "CONNECT authority form", method: "CONNECT", target: "consul:8500", status: 302},
	})
}

// The operators' front passes no leaf at all, not even one a service's front would pass.
func TestUIFrontPaths(t *testing.T) {
	run(t, "", []frontCase{
		{name: "order's leaf", target: "/v1/agent/connect/ca/leaf/order", status: 403},
		{name: "gateway's leaf", target: "/v1/agent/connect/ca/leaf/gateway", status: 403},
		{name: "no service", target: "/v1/agent/connect/ca/leaf/", status: 403},
		{name: "leaf, dot-dot", target: "/v1/agent/connect/ca/leaf/../leaf/order", status: 403},
		{name: "leaf, encoded slash", target: "/v1/agent/connect/ca%2Fleaf%2Forder", status: 403},
		{name: "leaf, doubled slash", target: "/v1/agent/connect/ca//leaf/order", status: 403},
		{name: "leaf, trailing slash", target: "/v1/agent/connect/ca/leaf/order/", status: 403},
		{name: "status", target: "/v1/status/leader", status: 200, reached: "/v1/status/leader"},
		{name: "ui", target: "/ui/", status: 200, reached: "/ui/"},
		{name: "root goes to the UI", target: "/", status: 302},
	})
}

// The operators' front passes no leaf at all, and sends HSTS.
func TestUIFrontPassesNoLeaf(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer agent.Close()
	h, _ := Handler(agent.URL, "", true, slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/agent/connect/ca/leaf/order", nil))
	if rec.Code != 403 {
		t.Errorf("leaf through the UI front: %d; want 403", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status/leader", nil))
	if rec.Code != 200 || rec.Header().Get("Strict-Transport-Security") == "" {
		t.Errorf("status through the UI front: %d, HSTS %q", rec.Code, rec.Header().Get("Strict-Transport-Security"))
	}
}

// A trailing slash reaches the agent as sent: the UI lives at /ui/, and the agent redirects /ui there.
func TestFrontKeepsTrailingSlash(t *testing.T) {
	var got []string
	agent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = append(got, r.URL.Path) }))
	defer agent.Close()
	h, _ := Handler(agent.URL, "", true, slog.New(slog.DiscardHandler))
	for path, want := range map[string]string{"/ui/": "/ui/", "/ui": "/ui", "/ui/dc1/services/": "/ui/dc1/services/", "/ui//x/./": "/ui/x/"} {
		got = nil
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s reached the agent as %v, want %s", path, got, want)
		}
	}
}

// A front on TCP (the operators' is) serves TLS, where Go also speaks HTTP/2: a request's :path is parsed and
// checked as an HTTP/1 request target is.
func TestFrontOverHTTP2(t *testing.T) {
	agent, agentSrv := newAgent(t)
	h, err := Handler(agentSrv.URL, "order", true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(h)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	for _, tc := range []struct {
		target string
		status int
	}{
		{"/v1/agent/connect/ca/leaf/order", 200},
		{"/v1/agent/connect/ca/leaf/gateway", 403},
		{"/v1/agent/connect/ca/leaf/order/../gateway", 403},
		{"/v1/agent/connect/ca%2Fleaf%2Fgateway", 403},
		{"/v1/agent/connect/ca/leaf/gatew%61y", 403},
		{"/v1/agent/connect/./ca//leaf/gateway/", 403},
	} {
		req, _ := http.NewRequest("GET", front.URL, nil)
		req.URL.Opaque = tc.target // sent as written
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seen, issued := agent.take()
		if resp.ProtoMajor != 2 || resp.StatusCode != tc.status {
			t.Errorf("%s: HTTP/%d %d; want HTTP/2 %d", tc.target, resp.ProtoMajor, resp.StatusCode, tc.status)
		}
		if tc.status == 403 && len(seen) != 0 {
			t.Errorf("%s: refused, yet the agent saw %+v", tc.target, seen)
		}
		for _, svc := range issued {
			if svc != "order" {
				t.Errorf("%s: the agent issued the leaf of %q", tc.target, svc)
			}
		}
	}
}
