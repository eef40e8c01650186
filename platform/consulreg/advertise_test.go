package consulreg

import (
	"io"
	"log/slog"
	"testing"
)

func TestRegistrationAddresses(t *testing.T) {
	tests := []struct {
		name          string
		advertiseNode bool
		wantAddress   string
	}{
		{"one machine: loopback for both", false, "127.0.0.1"},
		{"a pod: the node's address (empty), loopback behind the sidecar", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New("http://127.0.0.1:1", Instance{ID: "order-1", Name: "order", Address: "127.0.0.1", Port: 9090,
				CheckURL: "http://127.0.0.1:9090/health/readyz", AdvertiseNode: tc.advertiseNode},
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			reg := r.Registration()
			if reg.Address != tc.wantAddress {
				t.Errorf("Address = %q, want %q", reg.Address, tc.wantAddress)
			}
			side := reg.Connect.SidecarService
			if side.Address != "" {
				t.Errorf("sidecar Address = %q, want it inherited", side.Address)
			}
			if side.Proxy.LocalServiceAddress != "127.0.0.1" || side.Proxy.LocalServicePort != 9090 {
				t.Errorf("sidecar reaches %s:%d, want 127.0.0.1:9090", side.Proxy.LocalServiceAddress, side.Proxy.LocalServicePort)
			}
			if reg.Check.HTTP != "http://127.0.0.1:9090/health/readyz" {
				t.Errorf("check = %q", reg.Check.HTTP)
			}
		})
	}
}
