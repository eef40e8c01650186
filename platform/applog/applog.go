// Package applog builds the process's one slog.Logger and adapts it for go-kit, whose packages log through
// their own small interface.
package applog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	kitlog "github.com/go-kit/log"
	"go.opentelemetry.io/otel/trace"
)

// New returns a JSON logger at level ("debug", "info", "warn", "error") tagged with the service's name.
func New(w io.Writer, service, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: readableDurations})
	return slog.New(traceIDs{h}).With("service", service), nil
}

// traceIDs adds the trace_id of the record's context to every line logged with one (logger.InfoContext,
// LogAttrs), so a request's lines lead to its trace and a trace's spans to their lines.
type traceIDs struct{ slog.Handler }

func (h traceIDs) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceIDs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceIDs{h.Handler.WithAttrs(attrs)}
}
func (h traceIDs) WithGroup(name string) slog.Handler { return traceIDs{h.Handler.WithGroup(name)} }

// readableDurations writes durations as "1.5s" rather than nanoseconds: logs are read by people first.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// Kit adapts logger to go-kit's log.Logger. A "level" or "err" key among keyvals chooses the slog level.
func Kit(logger *slog.Logger) kitlog.Logger {
	return kitlog.LoggerFunc(func(keyvals ...any) error {
		level, msg := slog.LevelInfo, "go-kit"
		attrs := make([]any, 0, len(keyvals))
		for i := 0; i+1 < len(keyvals); i += 2 {
			k := fmt.Sprint(keyvals[i])
			v := keyvals[i+1]
			switch k {
			case "msg", "message":
				msg = fmt.Sprint(v)
				continue
			case "level":
				_ = level.UnmarshalText([]byte(strings.ToUpper(fmt.Sprint(v))))
				continue
			case "err":
				level = max(level, slog.LevelWarn)
			}
			attrs = append(attrs, k, v)
		}
		logger.Log(context.Background(), level, msg, attrs...)
		return nil
	})
}
