package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Jaeger reads traces from Jaeger's HTTP API (the one its UI uses): the local stack's on loopback, or Compose's
// over TLS with the operators' client certificate in Client.
type Jaeger struct {
	URL    string       // http(s)://host:port
	Client *http.Client // http.DefaultClient when nil
}

// JaegerTrace is the part of Jaeger's answer (/api/traces) the tests read.
type JaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		Duration      int64  `json:"duration"` // µs
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		ProcessID string     `json:"processID"`
		Tags      []JaegerKV `json:"tags"`
		Logs      []struct {
			Fields []JaegerKV `json:"fields"`
		} `json:"logs"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string     `json:"serviceName"`
		Tags        []JaegerKV `json:"tags"`
	} `json:"processes"`
}

// JaegerKV is a tag or a log field.
type JaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Get GETs path of the API and decodes its data.
func (j Jaeger) Get(path string) ([]JaegerTrace, error) {
	c := j.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Get(j.URL + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	var body struct {
		Data []JaegerTrace `json:"data"`
	}
	return body.Data, json.NewDecoder(resp.Body).Decode(&body)
}

// Span is one span of a trace, with its service, kind and parent (CHILD_OF).
type Span struct {
	ID, Parent, Trace, Service, Name, Kind string
	Duration                               time.Duration
}

// SpanList is the trace's spans.
func (tr JaegerTrace) SpanList() []Span {
	var out []Span
	for _, s := range tr.Spans {
		sp := Span{ID: s.SpanID, Trace: s.TraceID, Service: tr.Processes[s.ProcessID].ServiceName, Name: s.OperationName,
			Duration: time.Duration(s.Duration) * time.Microsecond}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				sp.Parent = r.SpanID
			}
		}
		for _, kv := range s.Tags {
			if kv.Key == "span.kind" {
				sp.Kind = fmt.Sprint(kv.Value)
			}
		}
		out = append(out, sp)
	}
	return out
}

// OrderTrace waits until Jaeger holds trace id with the four spans of a POST /pizza (the services batch their
// spans for up to 5 s) and returns them by role; it fails the test with what it found when they never come.
func (j Jaeger) OrderTrace(t testing.TB, id string) map[string]Span {
	t.Helper()
	roles := map[string]func(Span) bool{
		"gateway server": func(s Span) bool { return s.Service == "gateway" && s.Kind == "server" && s.Name == "POST /pizza" },
		"order client":   func(s Span) bool { return s.Service == "gateway" && s.Kind == "client" },
		"order server":   func(s Span) bool { return s.Service == "order" && s.Kind == "server" },
		"store":          func(s Span) bool { return s.Service == "order" && s.Name == "store create order" },
	}
	var found map[string]Span
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		traces, err := j.Get("/api/traces/" + id)
		found = map[string]Span{}
		last = fmt.Sprint(err)
		if err == nil && len(traces) == 1 {
			all := traces[0].SpanList()
			last = fmt.Sprintf("%+v", all)
			for role, is := range roles {
				for _, s := range all {
					if is(s) {
						found[role] = s
					}
				}
			}
			if len(found) == len(roles) {
				return found
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("trace %s in Jaeger: found %d of the %d spans of an order (%v); last answer: %s", id, len(found), len(roles), found, last)
	return nil
}

// CheckOrderTrace fails the test unless an order's spans (OrderTrace) are one chain: the gateway's server span
// starts the trace, and its client span, order's server span and the store's span are each the child of the one
// before. It logs the sidecar gap: the client span's time less the server span's.
func CheckOrderTrace(t testing.TB, spans map[string]Span) {
	t.Helper()
	for _, link := range [][2]string{{"order client", "gateway server"}, {"order server", "order client"}, {"store", "order server"}} {
		child, parent := link[0], link[1]
		if spans[child].Parent != spans[parent].ID {
			t.Errorf("the %s span's parent is %q, want the %s span %s", child, spans[child].Parent, parent, spans[parent].ID)
		}
	}
	if spans["gateway server"].Parent != "" {
		t.Errorf("the gateway's server span has parent %s: the edge must start the trace", spans["gateway server"].Parent)
	}
	client, server := spans["order client"].Duration, spans["order server"].Duration
	t.Logf("order client span %v, order server span %v: sidecar gap %v", client, server, client-server)
}
