// Package kitmw holds go-kit endpoint middleware shared by the services: logging, metrics and deadlines.
// Each constructor takes the endpoint's name, so a service applies them with one call per endpoint.
package kitmw

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Classify sorts an endpoint's error into an outcome: "ok", "client_error" (the caller's fault, e.g. bad
// input or not found) or "server_error" (ours, worth a look).
type Classify func(error) string

// Outcomes.
const (
	OutcomeOK          = "ok"
	OutcomeClientError = "client_error"
	OutcomeServerError = "server_error"
)

// ByStatus classifies an error by the HTTP status it is answered with (a service's error table): a 4xx is
// the client's, anything else ours.
func ByStatus(status func(error) int) Classify {
	return func(err error) string {
		if err == nil {
			return OutcomeOK
		}
		if s := status(err); s >= 400 && s < 500 {
			return OutcomeClientError
		}
		return OutcomeServerError
	}
}

// LongLived is implemented by the requests of endpoints that last as long as their client wants (event
// streams). Deadline leaves them alone: they end with the client, at shutdown or at their own maximum
// lifetime, and Logging and Instrumenting see them once, when they end.
type LongLived interface{ LongLived() }

// Logging logs one line per call. Requests and responses are never logged: they hold customer data.
func Logging(logger *slog.Logger, classify Classify) func(name string) endpoint.Middleware {
	return func(name string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				start := time.Now()
				resp, err := next(ctx, req)
				outcome := classify(err)
				level := slog.LevelDebug
				switch outcome {
				case OutcomeClientError:
					level = slog.LevelInfo
				case OutcomeServerError:
					level = slog.LevelError
				}
				if !logger.Enabled(ctx, level) {
					return resp, err // a successful call logs at Debug: build nothing when that is off
				}
				attrs := []slog.Attr{
					slog.String("endpoint", name),
					slog.String("request_id", reqid.FromContext(ctx)),
					slog.Duration("took", time.Since(start)),
					slog.String("outcome", outcome),
				}
				if err != nil {
					attrs = append(attrs, slog.String("err", err.Error()))
				}
				logger.LogAttrs(ctx, level, "endpoint call", attrs...)
				return resp, err
			}
		}
	}
}

// Instrumenting counts calls and observes their duration in seconds, labelled by method and outcome.
func Instrumenting(duration metrics.Histogram, classify Classify) func(name string) endpoint.Middleware {
	return func(name string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				start := time.Now()
				resp, err := next(ctx, req)
				h := duration.With("method", name, "outcome", classify(err))
				if e, ok := h.(*Exemplars); ok {
					e.observe(ctx, time.Since(start).Seconds())
				} else {
					h.Observe(time.Since(start).Seconds())
				}
				return resp, err
			}
		}
	}
}

// Exemplars is a Prometheus histogram for Instrumenting whose observation of a sampled, traced call carries its
// trace ID as an exemplar, so a slow bucket on a dashboard leads to a trace of it. (go-kit's Prometheus
// histogram hides its vector, and its Observe has no context.) Exemplars are served in the OpenMetrics format.
type Exemplars struct {
	vec *prometheus.HistogramVec
	lvs []string
}

var _ metrics.Histogram = (*Exemplars)(nil)

// NewExemplars wraps vec.
func NewExemplars(vec *prometheus.HistogramVec) *Exemplars { return &Exemplars{vec: vec} }

// With returns the histogram with these label values added (name, value, …).
func (h *Exemplars) With(labelValues ...string) metrics.Histogram {
	return &Exemplars{vec: h.vec, lvs: append(slices.Clone(h.lvs), labelValues...)}
}

// Observe records v without an exemplar.
func (h *Exemplars) Observe(v float64) { h.observe(context.Background(), v) }

func (h *Exemplars) observe(ctx context.Context, v float64) {
	labels := prometheus.Labels{}
	for i := 0; i+1 < len(h.lvs); i += 2 {
		labels[h.lvs[i]] = h.lvs[i+1]
	}
	o := h.vec.With(labels)
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	o.Observe(v)
}

// Deadline bounds every call to d, so a slow dependency can never hold a request forever. LongLived
// requests are not bounded here.
func Deadline(d time.Duration) func(name string) endpoint.Middleware {
	return func(string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				if _, ok := req.(LongLived); ok {
					return next(ctx, req)
				}
				ctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				return next(ctx, req)
			}
		}
	}
}
