package bench

import (
	"context"
	"net/http"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Load is one load. Closed loop (Rate 0): Clients workers, each sending its next request as soon as the
// previous one is answered, like that many customers' apps; vegeta's "as fast as possible" needs a fixed
// worker count, which is what makes the concurrency exact. Open loop (Rate > 0): Rate requests a second on
// schedule whatever the answers, as wrk2 and fortio measure meshes; Clients workers to start with, and vegeta
// adds more (up to MaxOpenLoopWorkers) when answers are late, so a slow answer never delays the next request.
type Load struct {
	Clients  int
	Rate     int
	Duration time.Duration
	// Client carries the requests: an HTTPS client for the services, a SQL transport for the ceiling.
	Client   *http.Client
	Targeter vegeta.Targeter
}

// MaxOpenLoopWorkers bounds the requests in flight at a fixed rate: at 300 orders/s, answers 3 s late.
const MaxOpenLoopWorkers = 1024

// Run attacks for l.Duration and returns every request's sample. It stops early when ctx ends.
func (l Load) Run(ctx context.Context, name string) []Sample {
	var pacer vegeta.Pacer = vegeta.ConstantPacer{}
	maxWorkers := uint64(l.Clients)
	if l.Rate > 0 {
		pacer, maxWorkers = vegeta.ConstantPacer{Freq: l.Rate, Per: time.Second}, MaxOpenLoopWorkers
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(l.Client),
		vegeta.Workers(uint64(l.Clients)),
		vegeta.MaxWorkers(maxWorkers),
		vegeta.MaxBody(0), // the answer's size does not matter here; reading it all does (keep-alive)
		vegeta.Redirects(vegeta.NoFollow),
	)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	samples := make([]Sample, 0, 4096)
	for r := range atk.Attack(l.Targeter, pacer, l.Duration, name) {
		samples = append(samples, Sample{Start: r.Timestamp, Latency: r.Latency, Err: r.Error})
	}
	return samples
}
