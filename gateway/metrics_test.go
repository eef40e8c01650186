package gateway_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/pizzajoint/mesh/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

// The metrics keep the names and labels operators' dashboards and alerts read.
func TestMetricsNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := gateway.NewMetrics(reg)
	m.Duration.With("method", "CreateOrder", "outcome", "ok").Observe(0.1)
	m.Refused.With("limit", "orders").Add(1)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // name: its labels
	for _, f := range families {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		got[f.GetName()] = strings.Join(labels, ",")
	}
	want := map[string]string{
		"pizza_gateway_request_duration_seconds": "method,outcome",
		"pizza_gateway_refused_total":            "limit",
	}
	if !maps.Equal(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
}
