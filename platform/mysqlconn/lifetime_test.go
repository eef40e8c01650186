package mysqlconn_test

import (
	"testing"
	"time"

	"github.com/pizzajoint/mesh/platform/mysqlconn"
)

func TestLeaseLifetime(t *testing.T) {
	tests := []struct {
		name            string
		configured, ttl time.Duration
		want            time.Duration
	}{
		{"long lease: the configured lifetime", 5 * time.Minute, time.Hour, 5 * time.Minute},
		{"lease twice the configured: the configured", 5 * time.Minute, 10 * time.Minute, 5 * time.Minute},
		{"short lease: half of it", 5 * time.Minute, 2 * time.Minute, time.Minute},
		{"odd lease: half, rounded down", 5 * time.Minute, 3 * time.Second, 1500 * time.Millisecond},
		{"very short lease: one second", 5 * time.Minute, time.Second, time.Second},
		{"no lease TTL: one second", 5 * time.Minute, 0, time.Second},
		{"small configured: kept", 2 * time.Second, time.Hour, 2 * time.Second},
		{"configured below a second: one second", 100 * time.Millisecond, time.Hour, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mysqlconn.LeaseLifetime(tt.configured, tt.ttl); got != tt.want {
				t.Errorf("LeaseLifetime(%s, %s) = %s; want %s", tt.configured, tt.ttl, got, tt.want)
			}
		})
	}
}
