package testkit

import "testing"

func TestDBReads(t *testing.T) {
	page := `# HELP pizza_order_db_reads_total Store reads by pool.
# TYPE pizza_order_db_reads_total counter
pizza_order_db_reads_total{pool="primary",reason="read_your_writes"} 3
pizza_order_db_reads_total{pool="replica",reason="replica"} 40
pizza_order_db_reads_total{pool="primary",reason="fallback"} 2
pizza_order_db_open_connections{pool="replica"} 7
`
	replica, all, err := DBReads(page)
	if err != nil || replica != 40 || all != 45 {
		t.Fatalf("DBReads = %d, %d, %v; want 40, 45, nil", replica, all, err)
	}
	if _, _, err := DBReads(`pizza_order_db_reads_total{pool="replica"} many`); err == nil {
		t.Fatal("a sample that is not a number was read without an error")
	}
}
