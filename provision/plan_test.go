package provision

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseInstances(t *testing.T) {
	tests := []struct {
		name    string
		plan    string
		want    []Instance
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"two", "service=order,id=order-1,dir=/p/o,owner=10001:10001,consul=true; service=order-migrate,id=m,dir=/p/m",
			[]Instance{{Service: "order", ID: "order-1", Dir: "/p/o", Owner: "10001:10001", Consul: true},
				{Service: "order-migrate", ID: "m", Dir: "/p/m"}}, ""},
		{"with a NATS identity", "service=order,id=order-1,dir=/p/o,consul=true,nats=order",
			[]Instance{{Service: "order", ID: "order-1", Dir: "/p/o", Consul: true, NATS: "order"}}, ""},
		{"NATS role not a name", "service=order,id=o,dir=/o,nats=../order", nil, "nats="},
		{"unknown service", "service=billing,id=b,dir=/b", nil, "unknown service"},
		{"unknown field", "service=order,id=o,dir=/o,tokn=x", nil, "not one of"},
		{"twice", "service=order,service=gateway,id=o,dir=/o", nil, "given twice"},
		{"owner not numeric", "service=order,id=o,dir=/o,owner=pizza", nil, "numeric"},
		{"consul not a bool", "service=order,id=o,dir=/o,consul=maybe", nil, "consul="},
		{"no dir", "service=order,id=o", nil, "credentials folder"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInstances(tc.plan)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseAgents(t *testing.T) {
	got, err := ParseAgents("node=order-1,file=/a/o.hcl,owner=10100 node=gateway-1,file=/a/g.hcl")
	want := []Agent{{Node: "order-1", File: "/a/o.hcl", Owner: "10100"}, {Node: "gateway-1", File: "/a/g.hcl"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseAgents("node=x"); err == nil {
		t.Fatal("an agent without a file was accepted")
	}
}

func TestLocalNetworks(t *testing.T) {
	addr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	got := localNetworks([]net.Addr{addr("127.0.0.1/8"), addr("172.23.0.5/16"), addr("fe80::1/64"),
		addr("169.254.3.3/16"), addr("10.9.8.7/24"), addr("172.23.0.9/16")})
	if want := []string{"172.23.0.0/16", "10.9.8.0/24"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("localNetworks = %v, want %v", got, want)
	}
	if v, err := resolveCidrs("127.0.0.1/32"); err != nil || v != "127.0.0.1/32" {
		t.Fatalf("a plain value changed: %q, %v", v, err)
	}
}

func TestServiceDirOwnerAndAgentConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	if _, err := openServiceDir(dir, "pizza", slog.Default()); err == nil {
		t.Fatal("a non-numeric owner was accepted")
	}
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	d, err := openServiceDir(dir, "10001:10002", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := writeServiceSecret(d, "token.hcl", agentTokenConfig("abc-123")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "token.hcl"))
	if err != nil || !strings.Contains(string(b), `agent = "abc-123"`) {
		t.Fatalf("agent config = %q, %v", b, err)
	}
	for _, p := range []string{dir, filepath.Join(dir, "token.hcl")} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid, gid := statOwner(st); uid != 10001 || gid != 10002 {
			t.Fatalf("%s: owner = %d:%d, want 10001:10002", p, uid, gid)
		}
	}
}
