// Package hostfilter keeps a local stack's loopback ports to the accounts that should use them, the way Istio's
// init container does with `iptables -m owner`: an nftables table on the output hook matches the owner (uid) of
// the socket that sends each packet. A connection to a guarded port from any other account is reset before it
// reaches the listener, and replies from a guarded port are dropped unless the port's own account sent them, so
// an account that binds a guarded port while its service restarts receives nothing either.
//
// One table per stack (its name derives from the stack's state folder), replaced atomically on every start and
// removed at stop. Root (uid 0) is always allowed: it runs the control plane, its health checks and the operator's
// tools, and the threat model trusts it.
package hostfilter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Port is one guarded listener on the host's loopback.
type Port struct {
	Name    string   // what listens there, for the rule's comment: "order-1", "gateway-1 upstream to order"
	Proto   string   // "tcp" or "udp"
	Number  int      // the port
	Owner   uint32   // the uid whose process listens there
	Clients []uint32 // the uids that may connect besides root (the owner only if listed)
}

// Table is a stack's ruleset: its name and the ports it guards.
type Table struct {
	Name  string
	Ports []Port
}

// TableName is the table of the stack whose state lives in stateDir: stacks on one host (a developer's and the
// tests' private ones) each own a table, and stopping one never touches another's.
func TableName(stateDir string) string {
	sum := sha256.Sum256([]byte(stateDir))
	return "pizzajoint_" + hex.EncodeToString(sum[:5])
}

// ParsePort reads one port of a stack's table from NAME:PORT/PROTO:OWNER:CLIENT,CLIENT…, with users by name or
// uid (CLIENTS may be empty: root only), e.g. "order-1:9090/tcp:pizza-order:pizza-order". lookup resolves a user
// name to its uid (LookupUID on a real host).
func ParsePort(spec string, lookup func(string) (uint32, error)) (Port, error) {
	fields := strings.Split(spec, ":")
	if len(fields) != 4 {
		return Port{}, fmt.Errorf("port %q: want NAME:PORT/PROTO:OWNER:CLIENTS", spec)
	}
	p := Port{Name: fields[0]}
	if p.Name == "" || strings.ContainsAny(p.Name, "\"\\\n") {
		return Port{}, fmt.Errorf("port %q: a name without quotes or backslashes is needed", spec)
	}
	num, proto, ok := strings.Cut(fields[1], "/")
	if !ok {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return Port{}, fmt.Errorf("port %q: protocol %q is not tcp or udp", spec, proto)
	}
	p.Proto = proto
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %q: %q is not a port number", spec, num)
	}
	p.Number = n
	if p.Owner, err = resolve(fields[2], lookup); err != nil {
		return Port{}, fmt.Errorf("port %q: owner: %w", spec, err)
	}
	if fields[3] != "" {
		for c := range strings.SplitSeq(fields[3], ",") {
			uid, err := resolve(c, lookup)
			if err != nil {
				return Port{}, fmt.Errorf("port %q: client: %w", spec, err)
			}
			p.Clients = append(p.Clients, uid)
		}
	}
	return p, nil
}

func resolve(name string, lookup func(string) (uint32, error)) (uint32, error) {
	if name == "" {
		return 0, errors.New("empty user")
	}
	if uid, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(uid), nil
	}
	return lookup(name)
}

// LookupUID is the uid of a local account.
func LookupUID(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	return uint32(uid), err
}

// Validate refuses a table that nft would take for something else than meant: a bad name, a port guarded twice
// with different accounts.
func (t Table) Validate() error {
	if !validName(t.Name) {
		return fmt.Errorf("table name %q: letters, digits and _ only, at most 64", t.Name)
	}
	seen := map[string]bool{}
	for _, p := range t.Ports {
		k := p.Proto + "/" + strconv.Itoa(p.Number)
		if seen[k] {
			return fmt.Errorf("port %s is listed twice", k)
		}
		seen[k] = true
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// Ruleset is the nft script that replaces the table in one transaction: "add" makes the "delete" safe on a host
// where the table does not exist yet, and nothing is unguarded in between.
//
// Per port, on the output hook, for packets that leave through the loopback interface (every address of the
// host: 127.0.0.0/8, ::1, the LAN address):
//   - to the port, from a socket whose owner is not root or a client: reset (the caller sees "connection refused");
//   - from the port, from a socket whose owner is not root or the owner: dropped (a squatter answers nobody).
//
// On the input hook, packets for a guarded port that arrive from another interface are dropped: the listeners are
// on loopback, and stay so even if one is misconfigured onto a wildcard address.
func (t Table) Ruleset() (string, error) {
	if err := t.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add table inet %s\ndelete table inet %s\n", t.Name, t.Name)
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n")
	for _, p := range t.Ports {
		clients := uidSet(append([]uint32{0}, p.Clients...))
		owners := uidSet([]uint32{0, p.Owner})
		refuse := "reject with tcp reset"
		if p.Proto == "udp" {
			refuse = "reject with icmpx type port-unreachable"
		}
		fmt.Fprintf(&b, "\t\toifname \"lo\" %s dport %d meta skuid != %s counter %s comment \"%s: connect\"\n",
			p.Proto, p.Number, clients, refuse, p.Name)
		fmt.Fprintf(&b, "\t\toifname \"lo\" %s sport %d meta skuid != %s counter drop comment \"%s: listen\"\n",
			p.Proto, p.Number, owners, p.Name)
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
	for _, proto := range []string{"tcp", "udp"} {
		var ports []string
		for _, p := range t.Ports {
			if p.Proto == proto {
				ports = append(ports, strconv.Itoa(p.Number))
			}
		}
		if len(ports) > 0 {
			fmt.Fprintf(&b, "\t\tiifname != \"lo\" %s dport { %s } counter drop comment \"loopback only\"\n",
				proto, strings.Join(ports, ", "))
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String(), nil
}

// uidSet is an nft anonymous set of uids, sorted and without repeats: { 0, 998 }.
func uidSet(uids []uint32) string {
	uids = slices.Clone(uids)
	slices.Sort(uids)
	uids = slices.Compact(uids)
	s := make([]string, len(uids))
	for i, u := range uids {
		s[i] = strconv.FormatUint(uint64(u), 10)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// Nft runs the nft program: Path, e.g. /usr/sbin/nft.
type Nft struct{ Path string }

// Apply replaces the table t in the kernel (atomically; the same table again changes nothing).
func (n Nft) Apply(ctx context.Context, t Table) error {
	rules, err := t.Ruleset()
	if err != nil {
		return err
	}
	return n.run(ctx, rules, "-f", "-")
}

// Remove deletes the table name if it exists.
func (n Nft) Remove(ctx context.Context, name string) error {
	if !validName(name) {
		return fmt.Errorf("table name %q: letters, digits and _ only", name)
	}
	return n.run(ctx, fmt.Sprintf("add table inet %s\ndelete table inet %s\n", name, name), "-f", "-")
}

// List returns the table as nft prints it, or an error if it does not exist.
func (n Nft) List(ctx context.Context, name string) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("table name %q: letters, digits and _ only", name)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, n.Path, "list", "table", "inet", name)
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("nft list table inet %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

func (n Nft) run(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, n.Path, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
