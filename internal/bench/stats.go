package bench

import (
	"math"
	"slices"
	"time"
)

// Sample is one request of a measurement.
type Sample struct {
	Start   time.Time
	Latency time.Duration
	// Err is empty for a success (a 2xx answer), else the status line or transport error.
	Err string
}

// Summary condenses a measurement's samples.
type Summary struct {
	Requests int
	Errors   int
	// ErrorKinds counts errors by message, so a table can say what failed.
	ErrorKinds map[string]int
	// Wall is from the first request's start to the last request's end.
	Wall time.Duration
	// Throughput is successful requests per second of Wall.
	Throughput         float64
	P50, P90, P99, Max time.Duration
}

// Summarize computes throughput and latency percentiles. Percentiles are over successful requests only: a
// fast error would otherwise make the service look quicker.
func Summarize(samples []Sample) Summary {
	s := Summary{Requests: len(samples)}
	if len(samples) == 0 {
		return s
	}
	first, last := samples[0].Start, samples[0].Start.Add(samples[0].Latency)
	ok := make([]time.Duration, 0, len(samples))
	for _, x := range samples {
		if x.Start.Before(first) {
			first = x.Start
		}
		if end := x.Start.Add(x.Latency); end.After(last) {
			last = end
		}
		if x.Err != "" {
			s.Errors++
			if s.ErrorKinds == nil {
				s.ErrorKinds = map[string]int{}
			}
			s.ErrorKinds[x.Err]++
			continue
		}
		ok = append(ok, x.Latency)
	}
	s.Wall = last.Sub(first)
	if s.Wall > 0 {
		s.Throughput = float64(len(ok)) / s.Wall.Seconds()
	}
	slices.Sort(ok)
	s.P50, s.P90, s.P99 = Percentile(ok, 0.50), Percentile(ok, 0.90), Percentile(ok, 0.99)
	if len(ok) > 0 {
		s.Max = ok[len(ok)-1]
	}
	return s
}

// Percentile is the nearest-rank q-quantile (0 < q ≤ 1) of sorted: the smallest value with at least q of
// the values at or below it. It never interpolates, so it is always a latency that was observed.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Ratio is a/b, and false when b is zero (no baseline to compare against).
func Ratio(a, b float64) (float64, bool) {
	if b == 0 {
		return 0, false
	}
	return a / b, true
}
