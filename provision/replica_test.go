package provision

import "testing"

// MariaDB's PASSWORD() of these, as its documentation and `SELECT PASSWORD('…')` give them.
func TestNativePasswordHash(t *testing.T) {
	for _, c := range []struct{ password, want string }{
		{"password", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"},
		{"", "*BE1BDEC0AA74B4DCB079943E70528096CCA985F8"},
	} {
		if got := nativePasswordHash(c.password); got != c.want {
			t.Errorf("nativePasswordHash(%q) = %s, want %s", c.password, got, c.want)
		}
	}
}
