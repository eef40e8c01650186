package testkit

import (
	"fmt"
	"strconv"
	"strings"
)

// DBReads sums order's count of store reads (pizza_order_db_reads_total) in a /metrics page in the Prometheus
// text format: all of them, and those the replica served (pool="replica").
func DBReads(metrics string) (replica, all int64, err error) {
	for _, l := range strings.Split(metrics, "\n") {
		sample, ok := strings.CutPrefix(l, "pizza_order_db_reads_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(sample, " ")
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("order's metric %q: %w", l, err)
		}
		all += int64(n)
		if strings.Contains(labels, `pool="replica"`) {
			replica += int64(n)
		}
	}
	return replica, all, nil
}
