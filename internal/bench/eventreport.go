package bench

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// PathJetStream is the order service's event path: the outbox relayed to NATS JetStream (order/eventrelay,
// order/eventstream). Until it was removed, a MySQL poller was measured beside it (docs/benchmarks.md).
const PathJetStream = "jetstream"

// EventTargetP99 is the poll interval of the MySQL poller that JetStream replaced: the latency the event path must
// stay under.
const EventTargetP99 = 200 * time.Millisecond

// EventCell is one event path with a number of open streams.
type EventCell struct {
	Path                          string
	CustomerStreams, StaffStreams int
	// Changes is how many status changes were sent.
	Changes int
	// Latencies run from sending a status change to the matching frame on that order's customer stream,
	// one per frame received.
	Latencies []time.Duration
	// RequestLatencies are the status-change requests' answer times (answered 200 or not).
	RequestLatencies []time.Duration
	// Frames that should have come and did not, came more than once, or were never asked for, over every
	// customer and staff stream.
	Missing, Repeated, Unexpected int
	// Refused counts status changes not answered 200 and streams that did not open, by answer.
	Refused map[string]int
	// Load1 is the machine's one-minute load average at the end of the cell.
	Load1 float64
}

func (c EventCell) refused() int {
	n := 0
	for _, v := range c.Refused {
		n += v
	}
	return n
}

// EventReport is a whole `make bench-events` run.
type EventReport struct {
	Date      time.Time
	Machine   Machine
	GoVersion string
	Commit    string
	// Rate is the status changes sent per second in each cell.
	Rate  float64
	Cells []EventCell
}

// Broken names every cell whose streams were not exact (a frame missing, repeated or out of place), that had
// a request refused, or that measured nothing. A slow path is reported in the table, never failed.
func (r EventReport) Broken() error {
	var errs []error
	for _, c := range r.Cells {
		name := fmt.Sprintf("%s with %d customer streams", c.Path, c.CustomerStreams)
		if c.Missing > 0 || c.Repeated > 0 || c.Unexpected > 0 {
			errs = append(errs, fmt.Errorf("%s: %d frames missing, %d repeated, %d unexpected", name, c.Missing,
				c.Repeated, c.Unexpected))
		}
		if n := c.refused(); n > 0 {
			kinds := slices.Sorted(maps.Keys(c.Refused))
			errs = append(errs, fmt.Errorf("%s: %d requests refused (%s)", name, n, strings.Join(kinds, "; ")))
		}
		if len(c.Latencies) == 0 {
			errs = append(errs, fmt.Errorf("%s: nothing measured (%d status changes sent)", name, c.Changes))
		}
	}
	if len(r.Cells) == 0 {
		errs = append(errs, errors.New("no cell was measured"))
	}
	return errors.Join(errs...)
}

// Markdown renders the run: one row per cell, then the target.
func (r EventReport) Markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Run of %s on %d cores", r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Machine.Cores)
	if r.Machine.CPUModel != "" {
		w(" (%s)", r.Machine.CPUModel)
	}
	w("; %s", r.GoVersion)
	if r.Commit != "" {
		w(", commit %s", r.Commit)
	}
	w(". One mesh stack, its events on NATS JetStream. "+
		"Each cell places one order per customer stream, opens the streams and waits for each order's history "+
		"(CREATED), opens the staff streams, then sends status changes at %.0f/s through the gateway's staff "+
		"API, spread over the open orders, each at a random moment of its 1/rate slot (no fixed grid).\n\n", r.Rate)
	w("Latency runs from sending a status change to its frame on that order's customer stream, through the " +
		"gateway: an upper bound on COMMIT → frame, since it includes the request's way in to the commit. Every " +
		"stream, customer and staff, is checked to get exactly its frames: no gap, no repeat.\n\n")
	w("| customer streams | staff streams | path | changes | p50 | p99 | max | missing | repeated | refused " +
		"| change request p50 | p99 | load (1 min) |\n")
	w("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, c := range r.Cells {
		lat, req := sorted(c.Latencies), sorted(c.RequestLatencies)
		repeated := fmt.Sprint(c.Repeated)
		if c.Unexpected > 0 {
			repeated += fmt.Sprintf(" (+%d unexpected)", c.Unexpected)
		}
		w("| %d | %d | %s | %d | %s | %s | %s | %d | %s | %d | %s | %s | %.2f |\n", c.CustomerStreams,
			c.StaffStreams, c.Path, c.Changes, ms(Percentile(lat, 0.50)), ms(Percentile(lat, 0.99)),
			ms(Percentile(lat, 1)), c.Missing, repeated, c.refused(), ms(Percentile(req, 0.50)),
			ms(Percentile(req, 0.99)), c.Load1)
	}
	w("\nTarget: p99 below %s, the interval of the MySQL poller JetStream replaced.\n\n| customer streams | path | p99 | met |\n"+
		"| ---: | --- | ---: | :---: |\n", ms(EventTargetP99))
	for _, c := range r.Cells {
		if len(c.Latencies) == 0 {
			continue
		}
		p99 := Percentile(sorted(c.Latencies), 0.99)
		w("| %d | %s | %s | %s |\n", c.CustomerStreams, c.Path, ms(p99), yes(p99 < EventTargetP99))
	}
	return b.String()
}

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}
