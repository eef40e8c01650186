// Package natsauth makes NATS identities and the server's authorization for them: each is an nkey user (the
// server holds only its public key, so the server's config holds no secret), in the one JetStream account,
// with the permissions of its role from nats/permissions/<role>.conf.
package natsauth

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nats-io/nkeys"
)

// Account is the account every identity belongs to; JetStream is enabled for it.
const Account = "PIZZA"

// User is one identity the server admits.
type User struct {
	// PublicKey is the user's nkey public key ("U…").
	PublicKey string
	// Role names its permissions file, nats/permissions/<Role>.conf.
	Role string
}

// NewUser makes a key pair: the seed is the secret the identity holds, the public key the server's.
func NewUser() (seed []byte, publicKey string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", err
	}
	defer kp.Wipe()
	s, err := kp.Seed()
	if err != nil {
		return nil, "", err
	}
	seed = append([]byte(nil), s...) // Wipe overwrites the key pair's own copy
	seed = append(seed, '\n')        // a seed file is one line
	if publicKey, err = kp.PublicKey(); err != nil {
		return nil, "", err
	}
	return seed, publicKey, nil
}

// PublicKeyOf returns the public key of a seed.
func PublicKeyOf(seed []byte) (string, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

var roleName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Accounts renders the server's accounts block for users, with each role's permissions from permDir written in
// (the server resolves an include against its config file's folder, which is not the repository). The users are
// sorted, so the same users give the same text (and no reload is needed when nothing changed).
func Accounts(permDir string, users []User) (string, error) {
	perms := map[string]string{}
	sorted := append([]User(nil), users...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].PublicKey < sorted[j].PublicKey })
	var b strings.Builder
	fmt.Fprintf(&b, "accounts {\n  %s {\n    jetstream: enabled\n    users: [\n", Account)
	for _, u := range sorted {
		if !nkeys.IsValidPublicUserKey(u.PublicKey) {
			return "", fmt.Errorf("%q is not an nkey user public key", u.PublicKey)
		}
		if !roleName.MatchString(u.Role) {
			return "", fmt.Errorf("role %q: want a lower-case name", u.Role)
		}
		if _, ok := perms[u.Role]; !ok {
			p, err := os.ReadFile(filepath.Join(permDir, u.Role+".conf"))
			if err != nil {
				return "", fmt.Errorf("permissions of role %s: %w", u.Role, err)
			}
			perms[u.Role] = strings.ReplaceAll(strings.TrimSpace(string(p)), "\n", "\n        ")
		}
		fmt.Fprintf(&b, "      {\n        nkey: %s\n        permissions: {\n        %s\n        }\n      }\n", u.PublicKey, perms[u.Role])
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.String(), nil
}
