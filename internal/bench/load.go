package bench

import (
	"context"
	"net/http"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Load is one closed-loop load: Clients workers, each sending its next request as soon as the previous one
// is answered, like that many customers' apps. Rate 0 (vegeta's "as fast as possible") needs a fixed
// worker count, which is what makes the concurrency exact.
type Load struct {
	Clients  int
	Duration time.Duration
	// Client carries the requests: an HTTPS client for the services, a SQL transport for the ceiling.
	Client   *http.Client
	Targeter vegeta.Targeter
}

// Run attacks for l.Duration and returns every request's sample. It stops early when ctx ends.
func (l Load) Run(ctx context.Context, name string) []Sample {
	atk := vegeta.NewAttacker(
		vegeta.Client(l.Client),
		vegeta.Workers(uint64(l.Clients)),
		vegeta.MaxWorkers(uint64(l.Clients)),
		vegeta.MaxBody(0), // the answer's size does not matter here; reading it all does (keep-alive)
		vegeta.Redirects(vegeta.NoFollow),
	)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	samples := make([]Sample, 0, 4096)
	for r := range atk.Attack(l.Targeter, vegeta.ConstantPacer{}, l.Duration, name) {
		samples = append(samples, Sample{Start: r.Timestamp, Latency: r.Latency, Err: r.Error})
	}
	return samples
}
