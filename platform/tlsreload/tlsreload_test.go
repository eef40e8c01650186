// Go's servers refuse TLS below 1.2 by default; put the old default back for this test binary, so that
// TestTLSConfig_minimumVersion checks the config's own MinVersion and fails if it goes.
//
//go:debug tls10server=1

package tlsreload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pizzajoint/mesh/internal/testkit"
)

func TestNew_fails(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, certFile, keyFile string)
	}{
		{"missing files", func(t *testing.T, certFile, keyFile string) {}},
		{"missing key", func(t *testing.T, certFile, keyFile string) {
			ca.write(t, certFile, keyFile, 1)
			must(t, os.Remove(keyFile))
		}},
		{"garbage certificate", func(t *testing.T, certFile, keyFile string) {
			ca.write(t, certFile, keyFile, 1)
			must(t, os.WriteFile(certFile, []byte("not a certificate"), 0o644))
		}},
		{"key of another certificate", func(t *testing.T, certFile, keyFile string) {
			ca.write(t, certFile, keyFile, 1)
			other := filepath.Join(t.TempDir(), "other")
			ca.write(t, other+".pem", other+"-key.pem", 2)
			must(t, os.Rename(other+"-key.pem", keyFile))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := paths(t)
			tt.setup(t, certFile, keyFile)
			r, err := New(certFile, keyFile, slog.New(slog.DiscardHandler))
			if err == nil || r != nil {
				t.Fatalf("New = %v, %v; want an error", r, err)
			}
		})
	}
}

func TestRun_picksUpNewCertificate(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := paths(t)
	ca.write(t, certFile, keyFile, 1)
	r, logs := newReloader(t, certFile, keyFile)
	client := ca.client()
	url := serve(t, r)

	if got := servedSerial(t, client, url); got != 1 {
		t.Fatalf("serial = %d, want 1", got)
	}
	steps := []struct {
		name  string
		write func()
	}{
		{"atomic rename", func() { ca.write(t, certFile, keyFile, 2) }},
		{"rewrite in place", func() { ca.writeInPlace(t, certFile, keyFile, 3) }},
	}
	for i, s := range steps {
		want := int64(i + 2)
		s.write()
		waitForSerial(t, client, url, want)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("logs do not report the reload: %s", logs)
	}
}

func TestReload_badFilesKeepCurrentCertificate(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, ca *testCA, certFile, keyFile string)
	}{
		{"half-written certificate", func(t *testing.T, ca *testCA, certFile, keyFile string) {
			b, err := os.ReadFile(certFile)
			must(t, err)
			must(t, os.WriteFile(certFile, b[:len(b)/2], 0o644))
		}},
		{"empty certificate", func(t *testing.T, ca *testCA, certFile, keyFile string) {
			must(t, os.WriteFile(certFile, nil, 0o644))
		}},
		{"key of another certificate", func(t *testing.T, ca *testCA, certFile, keyFile string) {
			other := filepath.Join(t.TempDir(), "other")
			ca.write(t, other+".pem", other+"-key.pem", 9)
			must(t, os.Rename(other+"-key.pem", keyFile))
		}},
		{"new certificate written before its key", func(t *testing.T, ca *testCA, certFile, keyFile string) {
			other := filepath.Join(t.TempDir(), "other")
			ca.write(t, other+".pem", other+"-key.pem", 9)
			must(t, os.Rename(other+".pem", certFile))
		}},
		{"key file removed", func(t *testing.T, ca *testCA, certFile, keyFile string) {
			must(t, os.Remove(keyFile))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newTestCA(t)
			certFile, keyFile := paths(t)
			ca.write(t, certFile, keyFile, 1)
			r, logs := newReloader(t, certFile, keyFile)
			client := ca.client()
			url := serve(t, r)

			tt.corrupt(t, ca, certFile, keyFile)
			// Run must notice the change, fail, warn once and keep serving serial 1.
			testkit.EventuallyEvery(t, 5*time.Second, testInterval, "the warning", func() error {
				if !strings.Contains(logs.String(), "keeping the current one") {
					return errors.New("not logged")
				}
				return nil
			})
			time.Sleep(20 * testInterval) // more ticks over the same broken files
			if n := strings.Count(logs.String(), "keeping the current one"); n != 1 {
				t.Errorf("warned %d times about the same broken files, want 1", n)
			}
			if err := r.Reload(); err == nil {
				t.Errorf("Reload of broken files returned no error")
			}
			if got := servedSerial(t, client, url); got != 1 {
				t.Fatalf("serial = %d after a broken file, want the old 1", got)
			}
			for _, secret := range []string{"PRIVATE KEY", ca.lastKeyBody} {
				if strings.Contains(logs.String(), secret) {
					t.Fatalf("logs contain key material %q", secret)
				}
			}

			ca.write(t, certFile, keyFile, 2) // the fixed files are picked up
			waitForSerial(t, client, url, 2)
		})
	}
}

func TestTLSConfig_minimumVersion(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := paths(t)
	ca.write(t, certFile, keyFile, 1)
	r, _ := newReloader(t, certFile, keyFile)
	url := serve(t, r)
	addr := strings.TrimPrefix(url, "https://")

	tests := []struct {
		name    string
		max     uint16
		wantErr bool
	}{
		{"TLS 1.0 refused", tls.VersionTLS10, true},
		{"TLS 1.1 refused", tls.VersionTLS11, true},
		{"TLS 1.2 accepted", tls.VersionTLS12, false},
		{"TLS 1.3 accepted", tls.VersionTLS13, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tt.max})
			if err == nil {
				_ = conn.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("handshake err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestRun_concurrentHandshakesDuringReloads is for the race detector: handshakes read the pointer while Run
// and Reload replace it.
func TestRun_concurrentHandshakesDuringReloads(t *testing.T) {
	ca := newTestCA(t)
	certFile, keyFile := paths(t)
	ca.write(t, certFile, keyFile, 1)
	r, _ := newReloader(t, certFile, keyFile)
	url := serve(t, r)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := ca.client()
			for ctx.Err() == nil {
				resp, err := client.Get(url)
				if err != nil {
					errs <- err
					return
				}
				_ = resp.Body.Close()
			}
		}()
	}
	for serial := int64(2); serial < 12; serial++ {
		ca.write(t, certFile, keyFile, serial)
		if serial%2 == 0 {
			_ = r.Reload() // may race with a half-finished pair; the old certificate then stays
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("handshake failed during reloads: %v", err)
	}
	waitForSerial(t, ca.client(), url, 11)
}

const testInterval = 10 * time.Millisecond

func newReloader(t *testing.T, certFile, keyFile string) (*Reloader, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	r, err := New(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)), WithPollInterval(testInterval))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, logs
}

// serve runs an http.Server on the reloader's TLSConfig, the way the gateway does, and returns its URL.
func serve(t *testing.T, r *Reloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         r.TLSConfig(),
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are expected here
	}
	done := make(chan struct{})
	go func() { _ = srv.ServeTLS(ln, "", ""); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return "https://" + ln.Addr().String()
}

// servedSerial makes a fresh TLS connection (keep-alives off) and returns the server certificate's serial.
func servedSerial(t *testing.T, client *http.Client, url string) int64 {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_ = resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
}

func waitForSerial(t *testing.T, client *http.Client, url string, want int64) {
	t.Helper()
	testkit.EventuallyEvery(t, 5*time.Second, testInterval, "the served certificate", func() error {
		if got := servedSerial(t, client, url); got != want {
			return fmt.Errorf("serial = %d, want %d", got, want)
		}
		return nil
	})
}

type testCA struct {
	cert        *x509.Certificate
	key         *ecdsa.PrivateKey
	pool        *x509.CertPool
	mu          sync.Mutex
	lastKeyBody string // a line of the last written key's base64, to prove it never reaches the logs
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) client() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: ca.pool},
			DisableKeepAlives: true, // every request handshakes, so it sees the current certificate
		},
	}
}

// pair issues a leaf for 127.0.0.1 with the given serial and returns its PEM certificate and key.
func (ca *testCA) pair(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	must(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	ca.mu.Lock()
	ca.lastKeyBody = strings.Split(string(keyPEM), "\n")[1]
	ca.mu.Unlock()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}

// write replaces both files atomically, key first, like cmd/devcerts.
func (ca *testCA) write(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	certPEM, keyPEM := ca.pair(t, serial)
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, keyPEM}, {certFile, certPEM}} {
		tmp := f.path + ".tmp"
		must(t, os.WriteFile(tmp, f.data, 0o600))
		must(t, os.Rename(tmp, f.path))
	}
}

// writeInPlace truncates and rewrites both files, as a careless tool would.
func (ca *testCA) writeInPlace(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	certPEM, keyPEM := ca.pair(t, serial)
	must(t, os.WriteFile(keyFile, keyPEM, 0o600))
	must(t, os.WriteFile(certFile, certPEM, 0o644))
}

func paths(t *testing.T) (certFile, keyFile string) {
	dir := t.TempDir()
	return filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
