package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

// jaeger is the local stack's Jaeger API: loopback, root's only (the tests run as root).
func jaeger() testkit.Jaeger { return testkit.Jaeger{URL: stack.JaegerURL} }

// One POST /pizza through the real mesh (gateway → its sidecar → mTLS → order's sidecar → order → MariaDB) is
// one trace in Jaeger: the gateway's server span, its client span to order, order's server span, the store's
// transaction span, each the child of the one before. The request ID the gateway answers with is the trace ID.
func TestTraceOfAnOrderCrossesTheMesh(t *testing.T) {
	status, p, err := placeOrder(t, "", orderBody("Trace Tester"))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /pizza: %d %v", status, err)
	}
	if len(p.RequestID) != 32 {
		t.Fatalf("request ID %q is not a trace ID", p.RequestID)
	}
	testkit.CheckOrderTrace(t, jaeger().OrderTrace(t, p.RequestID))
}

// No span of the services holds a customer's phone, address, name or tracking token: after an order is
// placed and tracked, every trace Jaeger has of gateway and order is searched, tags, events and processes.
func TestTraceHoldsNoCustomerData(t *testing.T) {
	const name = "Spanless Customer"
	status, p, err := placeOrder(t, "", orderBody(name))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /pizza: %d %v", status, err)
	}
	if code, _, err := trackOrder(p); err != nil || code != http.StatusOK {
		t.Fatalf("GET /pizza/%s: %d %v", p.ID, code, err)
	}
	jaeger().OrderTrace(t, p.RequestID) // the order's spans have arrived (the GET's were sent before or with them)
	time.Sleep(6 * time.Second)         // one more export interval for the GET's spans
	pii := []string{testPhone, testAddress, name, p.TrackingToken}
	searched := 0
	for _, service := range []string{"gateway", "order"} {
		traces, err := jaeger().Get("/api/traces?" + url.Values{"service": {service}, "limit": {"5000"}, "lookback": {"1h"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range traces {
			b, _ := json.Marshal(tr) // every tag, event field and process tag, as Jaeger keeps them
			searched += len(tr.Spans)
			for _, v := range pii {
				if strings.Contains(string(b), v) {
					t.Errorf("a trace of %s holds %q: %s", service, v, b)
				}
			}
		}
	}
	if searched == 0 {
		t.Fatal("Jaeger has no span of gateway or order: nothing was searched")
	}
	t.Logf("%d spans searched", searched)
}

// A staff status change is a trace of its own, from the gateway's staff API to the store, and it links to the
// order: Jaeger finds the order's creation and its status change by the order's ID (pizza.order_id).
func TestTraceOfAStatusChangeLinksToTheOrder(t *testing.T) {
	status, p, err := placeOrder(t, "", orderBody("Trace Tester"))
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /pizza: %d %v", status, err)
	}
	advance(t, p.ID, "ACCEPTED")
	tags, _ := json.Marshal(map[string]string{"pizza.order_id": p.ID})
	query := "/api/traces?" + url.Values{"service": {"order"}, "tags": {string(tags)}, "lookback": {"1h"}, "limit": {"20"}}.Encode()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		traces, err := jaeger().Get(query)
		last = fmt.Sprintf("%d traces, %v", len(traces), err)
		created, changed := "", ""
		for _, tr := range traces {
			names := map[string]bool{}
			for _, s := range tr.SpanList() {
				names[s.Service+" "+s.Name] = true
			}
			if names["order store create order"] && names["gateway POST /pizza"] {
				created = tr.TraceID
			}
			if names["order store change status"] && names["gateway POST /staff/api/orders/{id}/status"] {
				changed = tr.TraceID
			}
			last += fmt.Sprintf("; %s: %v", tr.TraceID, names)
		}
		if created != "" && changed != "" {
			if created == changed {
				t.Fatalf("the order's creation and its status change are one trace %s", created)
			}
			if created != p.RequestID {
				t.Errorf("the creation's trace %s is not the one the gateway answered with (%s)", created, p.RequestID)
			}
			return
		}
	}
	t.Fatalf("Jaeger has no creation and status change traces of order %s: %s", p.ID, last)
}

// A customer's stream is a trace of its own (the gateway's GET /pizza/{id}/events, through the mesh to order),
// with one "events deliver" span per event sent. Each delivery links to the "events publish" span of the relay
// that put the event on NATS, a trace of its own that Jaeger finds by the order's ID: the order's way from its
// outbox row to the customer's screen can be followed span by span. Seen red with the publish span's context
// left out of the message's headers (the deliveries had no link).
func TestTraceOfAStreamLinksEachDeliveryToItsPublish(t *testing.T) {
	o, err := placeTrackedAs(t, "Trace Tester", fmt.Sprintf("trace-stream-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := followCustomer(ctx, streamClient(), o.id, o.token)
	awaitConnected(t, 30*time.Second, src)
	advance(t, o.id, "ACCEPTED")
	advance(t, o.id, "CANCELLED") // a final status: the stream ends, and its spans with it
	select {
	case <-src.Done():
	case <-ctx.Done():
		t.Fatalf("the stream of %s did not end at CANCELLED", o.id)
	}
	if n := len(src.Frames()); n != 3 {
		t.Fatalf("the stream sent %d frames; want CREATED, ACCEPTED and CANCELLED", n)
	}

	tags, _ := json.Marshal(map[string]string{"pizza.order_id": o.id})
	query := "/api/traces?" + url.Values{"service": {"order"}, "tags": {string(tags)}, "lookback": {"1h"}, "limit": {"50"}}.Encode()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		traces, err := jaeger().Get(query)
		last = fmt.Sprintf("%d traces, %v", len(traces), err)
		published := map[string]bool{} // trace/span of every publish span of the order's events
		type delivery struct {
			streamTrace bool
			links       []string
		}
		var deliveries []delivery
		for _, tr := range traces {
			names := map[string]bool{}
			for _, s := range tr.SpanList() {
				names[s.Service+" "+s.Name] = true
			}
			stream := names["gateway GET /pizza/{id}/events"]
			for _, s := range tr.Spans {
				switch tr.Processes[s.ProcessID].ServiceName + " " + s.OperationName {
				case "order events publish":
					published[s.TraceID+"/"+s.SpanID] = true
				case "order events deliver":
					d := delivery{streamTrace: stream}
					for _, r := range s.References {
						if r.RefType == "FOLLOWS_FROM" {
							d.links = append(d.links, r.TraceID+"/"+r.SpanID)
						}
					}
					deliveries = append(deliveries, d)
				}
			}
			last += fmt.Sprintf("; %s: %v", tr.TraceID, names)
		}
		// The services batch their spans for up to 5 s, and the gateway's span of the stream ends with it.
		var problems []string
		if len(deliveries) < 3 || len(published) < 3 {
			problems = append(problems, fmt.Sprintf("%d deliveries and %d publishes; want 3 of each", len(deliveries), len(published)))
		}
		for i, d := range deliveries {
			if !d.streamTrace {
				problems = append(problems, fmt.Sprintf("delivery %d is not in the trace of the gateway's GET /pizza/{id}/events", i))
			}
			if len(d.links) != 1 || !published[d.links[0]] {
				problems = append(problems, fmt.Sprintf("delivery %d links to %v; want one publish span of the order's events (%v)", i, d.links, published))
			}
		}
		if len(problems) == 0 {
			return
		}
		last = strings.Join(problems, "; ") + "; " + last
	}
	t.Fatalf("the traces of order %s's events after 30 s: %s", o.id, last)
}
