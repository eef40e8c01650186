package bench

import (
	"strings"
	"testing"
	"time"
)

// eventCell has latencies step, 2×step, … 100×step (newest first): p50 50×step, p99 99×step, max 100×step.
func eventCell(path string, streams int, step time.Duration) EventCell {
	c := EventCell{Path: path, CustomerStreams: streams, StaffStreams: 3, Changes: 100, Load1: 1.5}
	for i := 100; i > 0; i-- {
		c.Latencies = append(c.Latencies, time.Duration(i)*step)
		c.RequestLatencies = append(c.RequestLatencies, time.Duration(i)*100*time.Microsecond)
	}
	return c
}

func sampleEventReport() EventReport {
	return EventReport{
		Date: time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC), Machine: Machine{Cores: 2, CPUModel: "Test CPU"},
		GoVersion: "go1.26.8", Commit: "abc1234", Rate: 20,
		Cells: []EventCell{
			eventCell(PathJetStream, 100, 3*time.Millisecond),
			eventCell(PathJetStream, 1000, 500*time.Microsecond),
		},
	}
}

func TestEventMarkdown(t *testing.T) {
	md := sampleEventReport().Markdown()
	hasAll(t, md,
		"Run of 2026-12-06 02:00 UTC on 2 cores (Test CPU); go1.26.8, commit abc1234.",
		"status changes at 20/s",
		"an upper bound on COMMIT → frame",
		"| 100 | 3 | jetstream | 100 | 150.0 ms | 297.0 ms | 300.0 ms | 0 | 0 | 0 | 5.0 ms | 9.9 ms | 1.50 |",
		"| 1000 | 3 | jetstream | 100 | 25.0 ms | 49.5 ms | 50.0 ms | 0 | 0 | 0 | 5.0 ms | 9.9 ms | 1.50 |",
		"Target: p99 below 200.0 ms, the interval of the MySQL poller JetStream replaced.",
		"| 100 | jetstream | 297.0 ms | no |",
		"| 1000 | jetstream | 49.5 ms | yes |",
	)
}

func TestEventMarkdownUnexpectedFrames(t *testing.T) {
	r := sampleEventReport()
	r.Cells[0].Repeated, r.Cells[0].Unexpected, r.Cells[0].Missing = 2, 5, 1
	r.Cells[0].Refused = map[string]int{"409 Conflict": 3}
	if md := r.Markdown(); !strings.Contains(md, "| 300.0 ms | 1 | 2 (+5 unexpected) | 3 |") {
		t.Errorf("markdown lacks the cell's faults\n%s", md)
	}
}

func TestEventReportBroken(t *testing.T) {
	with := func(f func(c *EventCell)) EventReport {
		r := sampleEventReport()
		f(&r.Cells[1])
		return r
	}
	for _, tc := range []struct {
		name string
		r    EventReport
		want string // "" for not broken
	}{
		{"exact streams, slow or not", sampleEventReport(), ""},
		{"a frame missing", with(func(c *EventCell) { c.Missing = 1 }),
			"jetstream with 1000 customer streams: 1 frames missing, 0 repeated, 0 unexpected"},
		{"a frame repeated", with(func(c *EventCell) { c.Repeated = 2 }),
			"jetstream with 1000 customer streams: 0 frames missing, 2 repeated, 0 unexpected"},
		{"a frame nobody asked for", with(func(c *EventCell) { c.Unexpected = 1 }),
			"jetstream with 1000 customer streams: 0 frames missing, 0 repeated, 1 unexpected"},
		{"refused requests", with(func(c *EventCell) {
			c.Refused = map[string]int{"429 Too Many Requests": 2, "503 Service Unavailable": 1}
		}),
			"jetstream with 1000 customer streams: 3 requests refused (429 Too Many Requests; 503 Service Unavailable)"},
		{"nothing measured", with(func(c *EventCell) { c.Latencies = nil }),
			"jetstream with 1000 customer streams: nothing measured (100 status changes sent)"},
		{"no cell at all", EventReport{}, "no cell was measured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Broken()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Broken() = %v; want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("Broken() = %v; want %q", err, tc.want)
			}
		})
	}
}
