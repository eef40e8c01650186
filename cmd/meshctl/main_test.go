package main

import (
	"testing"

	"github.com/ardanlabs/conf/v3"
)

// Only the commands that change Vault's configuration may take a root token for their run; a rotation of
// credentials or a token for a service must run on the caller's own token, so a stolen operator token never
// becomes a root token by asking for a harmless command.
func TestProvisions(t *testing.T) {
	for _, tc := range []struct {
		args conf.Args
		want bool
	}{
		{conf.Args{"kubernetes-auth"}, true},
		{conf.Args{"promote-db"}, true},
		{conf.Args{"rotate", "connect-ca"}, true},
		{conf.Args{"rotate", "db-creds"}, false},
		{conf.Args{"rotate", "db-root"}, false},
		{conf.Args{"rotate", "transit-key"}, false},
		{conf.Args{"cluster", "remove-peer", "vault"}, true},
		{conf.Args{"cluster", "remove-peer", "consul"}, false},
		{conf.Args{"cluster", "status"}, false},
		{conf.Args{"deliver"}, false},
		{conf.Args{"token", "operator"}, false},
	} {
		if got := provisions(tc.args); got != tc.want {
			t.Errorf("provisions(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
