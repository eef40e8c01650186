package kitmw

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/platform/reqid"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

var (
	errBadInput = errors.New("bad input")
	errBroken   = errors.New("database on fire")
)

func classify(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, errBadInput):
		return OutcomeClientError
	default:
		return OutcomeServerError
	}
}

func answering(resp any, err error) endpoint.Endpoint {
	return func(context.Context, any) (any, error) { return resp, err }
}

func TestLogging(t *testing.T) {
	tests := []struct {
		name    string
		level   slog.Level
		err     error
		want    string // "" for no line
		wantErr bool
	}{
		{"success at debug", slog.LevelDebug, nil, "level=DEBUG", false},
		{"success is quiet at info", slog.LevelInfo, nil, "", false},
		{"client error at info", slog.LevelInfo, errBadInput, "level=INFO", true},
		{"server error at error", slog.LevelInfo, errBroken, "level=ERROR", true},
		{"client error quiet at warn", slog.LevelWarn, errBadInput, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tt.level}))
			e := Logging(logger, classify)("place_order")(answering("the response", tt.err))
			ctx := reqid.NewContext(context.Background(), "req-1")
			resp, err := e(ctx, "Ada, 1 Main St, +1 555 0100")
			if resp != "the response" || !errors.Is(err, tt.err) {
				t.Fatalf("endpoint returned %v, %v; want the inner endpoint's answer", resp, err)
			}
			line := logs.String()
			if tt.want == "" {
				if line != "" {
					t.Fatalf("logged %q, want nothing", line)
				}
				return
			}
			for _, want := range []string{tt.want, "endpoint=place_order", "request_id=req-1", "outcome=" + classify(tt.err)} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %q lacks %q", line, want)
				}
			}
			if tt.wantErr && !strings.Contains(line, tt.err.Error()) {
				t.Errorf("log line %q lacks the error", line)
			}
			if strings.Contains(line, "Main St") || strings.Contains(line, "the response") {
				t.Errorf("log line %q holds the request or response", line)
			}
		})
	}
}

func TestInstrumenting(t *testing.T) {
	var labels [][]string
	mw := Instrumenting(&recordingHistogram{labels: &labels}, classify)
	for _, err := range []error{nil, errBadInput, errBroken} {
		_, _ = mw("menu")(answering(nil, err))(context.Background(), nil)
	}
	want := [][]string{
		{"method", "menu", "outcome", OutcomeOK},
		{"method", "menu", "outcome", OutcomeClientError},
		{"method", "menu", "outcome", OutcomeServerError},
	}
	if len(labels) != len(want) {
		t.Fatalf("observed %d calls, want %d", len(labels), len(want))
	}
	for i := range want {
		if strings.Join(labels[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("call %d labelled %v, want %v", i, labels[i], want[i])
		}
	}
}

// recordingHistogram notes the labels of each observation.
type recordingHistogram struct {
	labels *[][]string
	with   []string
}

func (h *recordingHistogram) With(lv ...string) metrics.Histogram {
	return &recordingHistogram{labels: h.labels, with: append(append([]string{}, h.with...), lv...)}
}

func (h *recordingHistogram) Observe(v float64) {
	if v < 0 {
		panic("negative duration")
	}
	*h.labels = append(*h.labels, h.with)
}

func TestDeadline(t *testing.T) {
	tests := []struct {
		name     string
		parent   time.Duration // 0: none
		deadline time.Duration
		want     time.Duration
	}{
		{"sets one", 0, time.Second, time.Second},
		{"keeps a sooner one", 100 * time.Millisecond, time.Second, 100 * time.Millisecond},
		{"shortens a later one", time.Hour, time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.parent > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.parent)
				defer cancel()
			}
			var left time.Duration
			_, _ = Deadline(tt.deadline)("x")(func(ctx context.Context, _ any) (any, error) {
				d, ok := ctx.Deadline()
				if !ok {
					t.Fatal("no deadline inside the endpoint")
				}
				left = time.Until(d)
				return nil, nil
			})(ctx, nil)
			if left > tt.want || left < tt.want-50*time.Millisecond {
				t.Errorf("deadline in %v, want about %v", left, tt.want)
			}
		})
	}
	t.Run("a slow call ends with the deadline", func(t *testing.T) {
		_, err := Deadline(20*time.Millisecond)("x")(func(ctx context.Context, _ any) (any, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(5 * time.Second):
				return nil, errors.New("still running after 5s")
			}
		})(context.Background(), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
	})
}

type streamRequest struct{}

func (streamRequest) LongLived() {}

// A stream outlives any call's deadline: Deadline leaves long-lived requests alone, and still bounds the rest.
func TestDeadline_leavesLongLivedAlone(t *testing.T) {
	var hasDeadline bool
	_, _ = Deadline(20*time.Millisecond)("stream")(func(ctx context.Context, _ any) (any, error) {
		_, hasDeadline = ctx.Deadline()
		return nil, nil
	})(context.Background(), streamRequest{})
	if hasDeadline {
		t.Error("a long-lived request got a deadline")
	}
}

func TestByStatus(t *testing.T) {
	status := func(err error) int {
		switch {
		case errors.Is(err, errBadInput):
			return 422
		case errors.Is(err, errBroken):
			return 503
		}
		return 500
	}
	tests := []struct {
		err  error
		want string
	}{
		{nil, OutcomeOK},
		{errBadInput, OutcomeClientError},
		{errBroken, OutcomeServerError},
		{errors.New("unknown"), OutcomeServerError},
	}
	for _, tt := range tests {
		if got := ByStatus(status)(tt.err); got != tt.want {
			t.Errorf("ByStatus(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// A sampled, traced call's duration carries its trace ID as an exemplar; an untraced one carries none.
func TestInstrumentingExemplars(t *testing.T) {
	reg := prometheus.NewRegistry()
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "d"}, []string{"method", "outcome"})
	reg.MustRegister(vec)
	mw := Instrumenting(NewExemplars(vec), classify)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	_, _ = mw("menu")(answering(nil, nil))(traced, nil)
	_, _ = mw("list")(answering(nil, nil))(context.Background(), nil)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exemplars := map[string][]string{} // method: trace IDs
	for _, m := range families[0].GetMetric() {
		method := m.GetLabel()[0].GetValue()
		exemplars[method] = nil
		for _, b := range m.GetHistogram().GetBucket() {
			for _, l := range b.GetExemplar().GetLabel() {
				exemplars[method] = append(exemplars[method], l.GetName()+"="+l.GetValue())
			}
		}
	}
	if got := exemplars["menu"]; len(got) != 1 || got[0] != "trace_id="+tid.String() {
		t.Errorf("traced call's exemplars %v, want one trace_id=%s", got, tid)
	}
	if got, ok := exemplars["list"]; !ok || len(got) != 0 {
		t.Errorf("untraced call's exemplars %v (observed: %v), want none", got, ok)
	}
}
