package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestEnsureCerts_fresh(t *testing.T) {
	dir := t.TempDir()
	res, err := ensureCerts(defaultOptions(dir, t0))
	if err != nil {
		t.Fatal(err)
	}
	if !res.CACreated || !res.ServerIssued {
		t.Fatalf("first run: CACreated %v, ServerIssued %v; want both", res.CACreated, res.ServerIssued)
	}

	ca := readCert(t, filepath.Join(dir, caCertName))
	if !ca.IsCA || !ca.NotAfter.Equal(t0.Add(365*24*time.Hour)) {
		t.Errorf("CA: IsCA %v, NotAfter %v; want a CA valid for a year", ca.IsCA, ca.NotAfter)
	}
	server := readCert(t, filepath.Join(dir, serverCertName))
	if !server.NotAfter.Equal(t0.Add(30 * 24 * time.Hour)) {
		t.Errorf("server NotAfter = %v, want 30 days from now", server.NotAfter)
	}
	if pub, ok := server.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("server key is %T, want ECDSA P-256", server.PublicKey)
	}
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		verifyFor(t, dir, name, t0)
	}

	for name, want := range map[string]os.FileMode{caKeyName: 0o600, serverKeyName: 0o600, caCertName: 0o644, serverCertName: 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("folder holds %d files, want exactly the 4 PEM files (no temp files left)", len(entries))
	}
}

func TestEnsureCerts_rerun(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(t *testing.T, dir string) // changes the folder after the first run
		opts       func(o *options)
		wantIssued bool
		verifyName string // a name the server certificate must now be valid for
	}{
		{name: "same day changes nothing", opts: func(o *options) { o.Now = t0.Add(time.Hour) }},
		{name: "renew keeps the CA and issues a new server certificate", opts: func(o *options) { o.Renew = true }, wantIssued: true},
		{name: "expiring within a week is re-issued", opts: func(o *options) { o.Now = t0.Add(24 * 24 * time.Hour) }, wantIssued: true},
		{name: "two weeks left is kept", opts: func(o *options) { o.Now = t0.Add(16 * 24 * time.Hour) }},
		{
			name:       "a new host is re-issued",
			opts:       func(o *options) { o.Hosts = []string{"pizza.local", "10.1.2.3"} },
			wantIssued: true, verifyName: "pizza.local",
		},
		{
			name:       "a new IP is re-issued",
			opts:       func(o *options) { o.Hosts = []string{"10.1.2.3"} },
			wantIssued: true, verifyName: "10.1.2.3",
		},
		{
			name:       "missing server key is re-issued",
			prepare:    func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, serverKeyName)) },
			wantIssued: true,
		},
		{
			name: "server certificate of another CA is re-issued",
			prepare: func(t *testing.T, dir string) {
				other := t.TempDir()
				if _, err := ensureCerts(defaultOptions(other, t0)); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{serverCertName, serverKeyName} {
					b, _ := os.ReadFile(filepath.Join(other, f))
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantIssued: true,
		},
		{
			name:       "half-written server certificate is re-issued",
			prepare:    func(t *testing.T, dir string) { truncate(t, filepath.Join(dir, serverCertName)) },
			wantIssued: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first, err := ensureCerts(defaultOptions(dir, t0))
			if err != nil {
				t.Fatal(err)
			}
			caBefore := readFile(t, filepath.Join(dir, caCertName))
			caKeyBefore := readFile(t, filepath.Join(dir, caKeyName))
			serverBefore := readFile(t, filepath.Join(dir, serverCertName))
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			opts := defaultOptions(dir, t0)
			if tt.opts != nil {
				tt.opts(&opts)
			}

			res, err := ensureCerts(opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.CACreated || !bytes.Equal(caBefore, readFile(t, filepath.Join(dir, caCertName))) ||
				!bytes.Equal(caKeyBefore, readFile(t, filepath.Join(dir, caKeyName))) {
				t.Fatalf("the CA changed; it must be kept so clients keep trusting it")
			}
			if res.ServerIssued != tt.wantIssued {
				t.Fatalf("ServerIssued = %v, want %v", res.ServerIssued, tt.wantIssued)
			}
			serverChanged := !bytes.Equal(serverBefore, readFile(t, filepath.Join(dir, serverCertName)))
			if serverChanged != tt.wantIssued || (tt.wantIssued && res.ServerSerial == first.ServerSerial) {
				t.Fatalf("server certificate changed %v (serial %s → %s), want changed %v",
					serverChanged, first.ServerSerial, res.ServerSerial, tt.wantIssued)
			}
			verifyFor(t, dir, "localhost", opts.Now)
			if tt.verifyName != "" {
				verifyFor(t, dir, tt.verifyName, opts.Now)
			}
		})
	}
}

func TestEnsureCerts_repairsKeyMode(t *testing.T) {
	dir := t.TempDir()
	if _, err := ensureCerts(defaultOptions(dir, t0)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{caKeyName, serverKeyName} {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ensureCerts(defaultOptions(dir, t0)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{caKeyName, serverKeyName} {
		if st, _ := os.Stat(filepath.Join(dir, f)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %o after a run, want 600", f, st.Mode().Perm())
		}
	}
}

func TestEnsureCerts_refuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		now     time.Time
		hosts   []string
		wantErr string
	}{
		{
			name:    "lone CA key is not overwritten",
			prepare: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, caCertName)) },
			now:     t0, wantErr: "found only one",
		},
		{
			name:    "CA expiring before the server certificate",
			prepare: func(t *testing.T, dir string) {},
			now:     t0.Add(350 * 24 * time.Hour), wantErr: "delete",
		},
		{
			name: "CA key replaced by another key",
			prepare: func(t *testing.T, dir string) {
				copyFile(t, filepath.Join(dir, serverKeyName), filepath.Join(dir, caKeyName))
			},
			now: t0, wantErr: "does not match",
		},
		{
			name:    "host with a space",
			prepare: func(t *testing.T, dir string) {},
			now:     t0, hosts: []string{"bad host"}, wantErr: "not a DNS name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := ensureCerts(defaultOptions(dir, t0)); err != nil {
				t.Fatal(err)
			}
			tt.prepare(t, dir)
			caKey := readFile(t, filepath.Join(dir, caKeyName))
			opts := defaultOptions(dir, tt.now)
			opts.Hosts = tt.hosts
			_, err := ensureCerts(opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if !bytes.Equal(caKey, readFile(t, filepath.Join(dir, caKeyName))) {
				t.Fatalf("a refused run changed the CA key")
			}
		})
	}
}

func TestRun_flagsAndLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	if err := run([]string{"-out", dir, "-hosts", "pizza.local, 192.0.2.7"}, logger); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pizza.local", "192.0.2.7", "localhost"} {
		verifyFor(t, dir, name, time.Now())
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") || !strings.Contains(logs.String(), "issued=true") {
		t.Fatalf("logs = %q; want the issue reported and no key material", logs.String())
	}
	if err := run([]string{"-out", dir, "extra"}, logger); err == nil {
		t.Fatalf("stray argument accepted")
	}
}

// verifyFor checks the server certificate chains to the CA for name, as a client using --cacert would.
func verifyFor(t *testing.T, dir, name string, now time.Time) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, caCertName)))
	server := readCert(t, filepath.Join(dir, serverCertName))
	if _, err := server.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
		t.Fatalf("server certificate does not verify for %s: %v", name, err)
	}
	if _, _, err := loadPair(filepath.Join(dir, serverCertName), filepath.Join(dir, serverKeyName)); err != nil {
		t.Fatalf("server key: %v", err)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, path string) {
	t.Helper()
	b := readFile(t, path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRunDeliversPairAndCA(t *testing.T) {
	out, to, caTo := t.TempDir(), t.TempDir(), t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := run([]string{"-out", out, "-name", "vault", "-hosts", "vault", "-to", to, "-ca-to", caTo}, logger); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		perm os.FileMode
	}{{filepath.Join(to, "vault.pem"), 0o644}, {filepath.Join(to, "vault-key.pem"), 0o600},
		{filepath.Join(to, "ca.pem"), 0o644}, {filepath.Join(caTo, "ca.pem"), 0o644}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.perm {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode().Perm(), f.perm)
		}
	}
	if _, err := os.Stat(filepath.Join(to, "ca-key.pem")); err == nil {
		t.Fatal("the CA key was delivered")
	}
	if _, err := os.Stat(filepath.Join(caTo, "vault-key.pem")); err == nil {
		t.Fatal("-ca-to got a private key")
	}
	if err := run([]string{"-out", out, "-to", to, "-owner", "pizza"}, logger); err == nil {
		t.Fatal("a non-numeric owner was accepted")
	}
}

// A certificate asked with ClientAuth verifies as a TLS client too (a Consul server's RPC certificate, which it
// also presents when it dials), and one issued without it is re-issued when the client use is asked later.
func TestEnsureCerts_clientAuth(t *testing.T) {
	dir := t.TempDir()
	opts := defaultOptions(dir, t0)
	opts.Name, opts.Hosts = "consul-rpc", []string{"server.dc1.consul"}
	if _, err := ensureCerts(opts); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, caCertName)))
	verifyAs := func(usage x509.ExtKeyUsage) error {
		cert := readCert(t, filepath.Join(dir, "consul-rpc.pem"))
		_, err := cert.Verify(x509.VerifyOptions{DNSName: "server.dc1.consul", Roots: roots, CurrentTime: t0,
			KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verifyAs(x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("a certificate issued without ClientAuth verifies as a client")
	}
	opts.ClientAuth = true
	res, err := ensureCerts(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ServerIssued {
		t.Fatal("asking for ClientAuth kept a server-only certificate")
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if err := verifyAs(usage); err != nil {
			t.Errorf("usage %v: %v", usage, err)
		}
	}
	if res, err = ensureCerts(opts); err != nil || res.ServerIssued {
		t.Fatalf("rerun with ClientAuth: issued %v, err %v; want the good certificate kept", res.ServerIssued, err)
	}
}

// A second run delivers into a volume its owner already holds: a link the owner planted at a file name fails the
// run, and the root-only file it points at keeps its content and owner.
func TestRunRefusesPlantedLinksInTheVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test gives a folder to another account: run it as root (make test does)")
	}
	out, parent := t.TempDir(), t.TempDir()
	to, canary := filepath.Join(parent, "tls"), filepath.Join(parent, "root-only")
	if err := os.WriteFile(canary, []byte("root's\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	args := []string{"-out", out, "-name", "vault", "-hosts", "vault", "-to", to, "-owner", "54321:54321"}
	if err := run(args, logger); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vault-key.pem", "vault.pem", "ca.pem"} {
		t.Run(name, func(t *testing.T) {
			target := filepath.Join(to, name)
			mustRemove(t, target)
			if err := os.Symlink(canary, target); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(target, 54321, 54321); err != nil {
				t.Fatal(err)
			}
			if err := run(append(args, "-renew"), logger); err == nil {
				t.Fatalf("a link planted at %s was written through or replaced without a word", name)
			}
			if got := string(readFile(t, canary)); got != "root's\n" {
				t.Fatalf("the root-only file now holds %q", got)
			}
			st, err := os.Stat(canary)
			if err != nil {
				t.Fatal(err)
			}
			if uid, _ := ownerOf(st); uid != 0 {
				t.Fatalf("the root-only file was given to uid %d", uid)
			}
			mustRemove(t, target)
			if err := run(args, logger); err != nil {
				t.Fatalf("with the link gone, the delivery works again: %v", err)
			}
		})
	}
	// A link at a name the run might use for its temporary copy is never written through either.
	for _, name := range []string{"vault-key.pem.new", "vault.pem.new", "ca.pem.new"} {
		t.Run(name, func(t *testing.T) {
			target := filepath.Join(to, name)
			if err := os.Symlink(canary, target); err != nil {
				t.Fatal(err)
			}
			defer mustRemove(t, target)
			_ = run(append(args, "-renew"), logger)
			if got := string(readFile(t, canary)); got != "root's\n" {
				t.Fatalf("the root-only file was written through %s: it now starts %.30q", name, got)
			}
		})
	}
}
