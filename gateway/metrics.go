package gateway

import (
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/pizzajoint/mesh/platform/kitmw"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's own Prometheus metrics; their names are what operators' dashboards and alerts read.
type Metrics struct {
	// Duration is the time spent in each endpoint, by method and outcome (for kitmw.Instrumenting).
	Duration *kitmw.Exemplars
	// Refused counts requests refused by a limit, by limit (for edge.Config.Options).
	Refused *kitprometheus.Counter
}

// NewMetrics registers the gateway's metrics with reg (prometheus.DefaultRegisterer in the service), once.
func NewMetrics(reg prometheus.Registerer) Metrics {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pizza", Subsystem: "gateway", Name: "request_duration_seconds",
		Help: "Time spent in gateway endpoints, by method and outcome.",
	}, []string{"method", "outcome"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pizza", Subsystem: "gateway", Name: "refused_total",
		Help: "Requests refused by a limit (orders, logins, client_streams, all_streams).",
	}, []string{"limit"})
	reg.MustRegister(duration, refused)
	return Metrics{Duration: kitmw.NewExemplars(duration), Refused: kitprometheus.NewCounter(refused)}
}
