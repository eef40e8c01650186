package hostfilter

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func fakeUsers(name string) (uint32, error) {
	switch name {
	case "pizza-order":
		return 998, nil
	case "pizza-gateway":
		return 997, nil
	case "root":
		return 0, nil
	}
	return 0, errors.New("unknown user " + name)
}

func TestParsePort(t *testing.T) {
	cases := []struct {
		name, spec string
		want       Port
		err        string
	}{
		{"a service port for its sidecar", "order-1:9090/tcp:pizza-order:pizza-order",
			Port{Name: "order-1", Proto: "tcp", Number: 9090, Owner: 998, Clients: []uint32{998}}, ""},
		{"tcp when no protocol", "metrics:9464:pizza-gateway:",
			Port{Name: "metrics", Proto: "tcp", Number: 9464, Owner: 997}, ""},
		{"uids and names mixed", "mysql:13306/tcp:0:pizza-order,1234",
			Port{Name: "mysql", Proto: "tcp", Number: 13306, Owner: 0, Clients: []uint32{998, 1234}}, ""},
		{"udp", "serf:8301/udp:root:",
			Port{Name: "serf", Proto: "udp", Number: 8301, Owner: 0}, ""},
		{"too few fields", "order-1:9090:pizza-order", Port{}, "want NAME:PORT/PROTO:OWNER:CLIENTS"},
		{"no name", ":9090/tcp:root:", Port{}, "a name"},
		{"a quote in the name", "a\"b:9090/tcp:root:", Port{}, "a name"},
		{"port out of range", "x:70000/tcp:root:", Port{}, "not a port number"},
		{"port zero", "x:0/tcp:root:", Port{}, "not a port number"},
		{"other protocol", "x:9090/sctp:root:", Port{}, "not tcp or udp"},
		{"unknown owner", "x:9090/tcp:mallory:", Port{}, "owner: unknown user mallory"},
		{"unknown client", "x:9090/tcp:root:mallory", Port{}, "client: unknown user mallory"},
		{"empty client", "x:9090/tcp:root:pizza-order,", Port{}, "client: empty user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePort(c.spec, fakeUsers)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ParsePort(%q) = %+v, %v; want an error with %q", c.spec, got, err, c.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParsePort(%q) = %+v, %v; want %+v", c.spec, got, err, c.want)
			}
		})
	}
}

func TestRuleset(t *testing.T) {
	order := Port{Name: "order-1", Proto: "tcp", Number: 9090, Owner: 998, Clients: []uint32{998, 998, 0}}
	serf := Port{Name: "consul serf", Proto: "udp", Number: 8301, Owner: 0}
	cases := []struct {
		name  string
		table Table
		want  []string // lines the ruleset must hold, in this order
		not   []string // nor any of these
		err   string
	}{
		{"replaced in one transaction", Table{Name: "pizzajoint_1", Ports: []Port{order}}, []string{
			"add table inet pizzajoint_1", "delete table inet pizzajoint_1", "table inet pizzajoint_1 {",
		}, nil, ""},
		{"connect: root and the clients, each once; listen: root and the owner", Table{Name: "t", Ports: []Port{order}}, []string{
			`oifname "lo" tcp dport 9090 meta skuid != { 0, 998 } counter reject with tcp reset comment "order-1: connect"`,
			`oifname "lo" tcp sport 9090 meta skuid != { 0, 998 } counter drop comment "order-1: listen"`,
			`iifname != "lo" tcp dport { 9090 } counter drop comment "loopback only"`,
		}, []string{"udp"}, ""},
		{"root only, over udp", Table{Name: "t", Ports: []Port{serf}}, []string{
			`oifname "lo" udp dport 8301 meta skuid != { 0 } counter reject with icmpx type port-unreachable comment "consul serf: connect"`,
			`oifname "lo" udp sport 8301 meta skuid != { 0 } counter drop comment "consul serf: listen"`,
			`iifname != "lo" udp dport { 8301 } counter drop comment "loopback only"`,
		}, []string{"tcp dport"}, ""},
		{"a client that is not the owner", Table{Name: "t", Ports: []Port{{Name: "order-1", Proto: "tcp", Number: 9090, Owner: 998, Clients: []uint32{997}}}}, []string{
			`tcp dport 9090 meta skuid != { 0, 997 } counter reject`,
			`tcp sport 9090 meta skuid != { 0, 998 } counter drop`,
		}, nil, ""},
		{"a name nft would read as more", Table{Name: "t; flush ruleset", Ports: []Port{order}}, nil, nil, "table name"},
		{"a port twice", Table{Name: "t", Ports: []Port{order, order}}, nil, nil, "listed twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.table.Ruleset()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Ruleset() error = %v; want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest := got
			for _, w := range c.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("ruleset lacks (or misorders) %q:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range c.not {
				if strings.Contains(got, n) {
					t.Errorf("ruleset holds %q:\n%s", n, got)
				}
			}
		})
	}
}

func TestTableName(t *testing.T) {
	a, b := TableName("/work/.state"), TableName("/tmp/pz123")
	if a == b || a != TableName("/work/.state") || !validName(a) || !strings.HasPrefix(a, "pizzajoint_") {
		t.Fatalf("TableName: %q, %q: want distinct, stable, valid names", a, b)
	}
}
