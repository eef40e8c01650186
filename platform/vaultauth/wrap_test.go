package vaultauth

import "testing"

// Only a wrapping token made by an AppRole's secret-id endpoint (of the expected role) is unwrapped: a token
// wrapping anything else could hand the service someone else's secret.
func TestWrappedSecretIDPath(t *testing.T) {
	tests := []struct {
		path, role string
		want       bool
	}{
		{"auth/approle/role/order/secret-id", "order", true},
		{"auth/approle/role/order/secret-id", "", true},
		{"auth/approle/role/gateway/secret-id", "order", false},
		{"auth/approle/role/order/secret-id-accessor/lookup", "order", false},
		{"auth/approle/role/a/b/secret-id", "", false},
		{"auth/approle/role//secret-id", "", false},
		{"sys/wrapping/wrap", "order", false},
		{"auth/approle/login", "order", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := wrappedSecretIDPath(tt.path, tt.role); got != tt.want {
			t.Errorf("wrappedSecretIDPath(%q, %q) = %v; want %v", tt.path, tt.role, got, tt.want)
		}
	}
}
