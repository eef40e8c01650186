package applog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/pizzajoint/mesh/platform/applog"
	"go.opentelemetry.io/otel/trace"
)

func TestTraceIDInEveryLineOfARequest(t *testing.T) {
	var buf bytes.Buffer
	logger, err := applog.New(&buf, "order", "info")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	for name, log := range map[string]func(){
		"InfoContext":           func() { logger.InfoContext(ctx, "x") },
		"With then WarnContext": func() { logger.With("k", "v").WarnContext(ctx, "x") },
		"WithGroup":             func() { logger.WithGroup("g").InfoContext(ctx, "x", "a", 1) },
	} {
		buf.Reset()
		log()
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if line["trace_id"] != tid.String() && (line["g"] == nil || line["g"].(map[string]any)["trace_id"] != tid.String()) {
			t.Errorf("%s: line %s has no trace_id %s", name, buf.String(), tid)
		}
	}
	buf.Reset()
	logger.Info("outside a request")
	if bytes.Contains(buf.Bytes(), []byte("trace_id")) {
		t.Errorf("a line without a span context has a trace_id: %s", buf.String())
	}
}
