package bench

import (
	"os"
	"testing"
	"time"
)

func osPid() int { return os.Getpid() }

func TestPercentile(t *testing.T) {
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one value", []time.Duration{7}, 0.99, 7},
		{"median of ten", ten, 0.50, 5},
		{"p90 of ten", ten, 0.90, 9},
		{"p99 of ten is the max", ten, 0.99, 10},
		{"p100", ten, 1, 10},
		{"tiny q is the min", ten, 0.0001, 1},
		{"p99 of 1000", seq(1000), 0.99, 990},
		{"p50 of 1001", seq(1001), 0.50, 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("Percentile(q=%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func seq(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	return s
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	samples := []Sample{
		{Start: t0.Add(500 * ms), Latency: 40 * ms},
		{Start: t0, Latency: 10 * ms},
		{Start: t0.Add(100 * ms), Latency: 1 * ms, Err: "503 Service Unavailable"},
		{Start: t0.Add(900 * ms), Latency: 100 * ms}, // ends last, at 1 s
		{Start: t0.Add(200 * ms), Latency: 20 * ms},
		{Start: t0.Add(300 * ms), Latency: 2 * ms, Err: "503 Service Unavailable"},
		{Start: t0.Add(400 * ms), Latency: 3 * ms, Err: "connection refused"},
	}
	s := Summarize(samples)
	if s.Requests != 7 || s.Errors != 3 {
		t.Errorf("requests %d errors %d, want 7 and 3", s.Requests, s.Errors)
	}
	if s.ErrorKinds["503 Service Unavailable"] != 2 || s.ErrorKinds["connection refused"] != 1 {
		t.Errorf("error kinds %v", s.ErrorKinds)
	}
	if s.Wall != time.Second {
		t.Errorf("wall %v, want 1s (first start to last end)", s.Wall)
	}
	if s.Throughput != 4 {
		t.Errorf("throughput %v, want 4 successes per second", s.Throughput)
	}
	// Successes only: 10, 20, 40, 100 ms.
	if s.P50 != 20*ms || s.P90 != 100*ms || s.P99 != 100*ms || s.Max != 100*ms {
		t.Errorf("p50 %v p90 %v p99 %v max %v", s.P50, s.P90, s.P99, s.Max)
	}
	if z := Summarize(nil); z.Requests != 0 || z.Throughput != 0 || z.P99 != 0 {
		t.Errorf("empty summary %+v", z)
	}
	allFail := Summarize([]Sample{{Start: t0, Latency: ms, Err: "x"}})
	if allFail.Throughput != 0 || allFail.P50 != 0 || allFail.Errors != 1 {
		t.Errorf("all failed: %+v", allFail)
	}
}

func TestRatio(t *testing.T) {
	if r, ok := Ratio(600, 1000); !ok || r != 0.6 {
		t.Errorf("Ratio(600, 1000) = %v, %v", r, ok)
	}
	if _, ok := Ratio(1, 0); ok {
		t.Error("Ratio over zero: want not ok")
	}
}
