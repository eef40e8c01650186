package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the output folder; certs/README.md and the gateway's defaults use the same names.
const (
	caCertName     = "ca.pem"
	caKeyName      = "ca-key.pem"
	serverCertName = "server.pem"
	serverKeyName  = "server-key.pem"
)

// defaultNames are always in the server certificate: the gateway is reached by all three locally.
var defaultNames = []string{"localhost", "127.0.0.1", "::1"}

type options struct {
	Dir string
	// Name is the certificate's file name stem: "server" (the gateway) writes server.pem and server-key.pem;
	// "vault" and "consul" get listener certificates of their own, never the gateway's.
	Name  string
	Hosts []string // extra DNS names or IPs
	Renew bool     // re-issue the server certificate even when it is still good
	// ClientAuth makes the certificate good for TLS clients too: a Consul server presents one certificate both
	// when it answers RPC and when it dials another agent, and verify_incoming checks it on both sides.
	ClientAuth     bool
	Now            time.Time
	CAValidity     time.Duration
	ServerValidity time.Duration
	RenewBefore    time.Duration // re-issue a server certificate that expires sooner than this
}

func defaultOptions(dir string, now time.Time) options {
	return options{
		Dir:            dir,
		Name:           "server",
		Now:            now,
		CAValidity:     365 * 24 * time.Hour,
		ServerValidity: 30 * 24 * time.Hour,
		RenewBefore:    7 * 24 * time.Hour,
	}
}

type result struct {
	CAFile        string
	CACreated     bool
	CAExpires     time.Time
	ServerFile    string
	ServerIssued  bool
	ServerSerial  string // hex
	ServerNames   []string
	ServerExpires time.Time
}

// ensureCerts makes the folder hold a CA and a valid server certificate signed by it, changing as little as
// possible: the CA is created only when absent, the server certificate re-issued only when needed or asked.
func ensureCerts(opts options) (result, error) {
	names := serverNames(opts.Hosts)
	for _, n := range names {
		if strings.ContainsAny(n, " \t,/") {
			return result{}, fmt.Errorf("host %q is not a DNS name or IP address", n)
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return result{}, err
	}
	path := func(name string) string { return filepath.Join(opts.Dir, name) }

	caCert, caKey, caCreated, err := loadOrCreateCA(path(caCertName), path(caKeyName), opts)
	if err != nil {
		return result{}, err
	}
	certName, keyName := serverCertName, serverKeyName
	if opts.Name != "" && opts.Name != "server" {
		if strings.ContainsAny(opts.Name, "/\\. ") {
			return result{}, fmt.Errorf("certificate name %q must be a plain file name stem", opts.Name)
		}
		certName, keyName = opts.Name+".pem", opts.Name+"-key.pem"
	}
	res := result{CAFile: path(caCertName), CACreated: caCreated, CAExpires: caCert.NotAfter,
		ServerFile: path(certName), ServerNames: names}

	cert, err := loadServer(path(certName), path(keyName), caCert, names, opts)
	if err != nil || opts.Renew {
		// Any reason to re-issue (missing, broken, other CA, expiring, a name missing) leads here; the next
		// certificate fixes all of them, so the reason needs no handling of its own.
		if cert, err = issueServer(path(certName), path(keyName), caCert, caKey, names, opts); err != nil {
			return result{}, err
		}
		res.ServerIssued = true
	}
	res.ServerSerial = cert.SerialNumber.Text(16)
	res.ServerExpires = cert.NotAfter
	return res, nil
}

func serverNames(hosts []string) []string {
	names := slices.Clone(defaultNames)
	for _, h := range hosts {
		if h = strings.TrimSpace(h); h != "" && !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return names
}

func loadOrCreateCA(certPath, keyPath string, opts options) (*x509.Certificate, crypto.Signer, bool, error) {
	certExists, keyExists := exists(certPath), exists(keyPath)
	switch {
	case certExists && keyExists:
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, false, fmt.Errorf("existing CA: %w (delete %s and %s to make a new CA; clients must then trust the new one)",
				err, certPath, keyPath)
		}
		if !cert.IsCA {
			return nil, nil, false, fmt.Errorf("%s is not a CA certificate", certPath)
		}
		// A CA that dies before the server certificate would make every new certificate useless.
		if opts.Now.Add(opts.ServerValidity).After(cert.NotAfter) {
			return nil, nil, false, fmt.Errorf("CA %s expires %s, before a new server certificate would; "+
				"delete %s and %s to make a new CA (clients must then trust the new one)",
				certPath, cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
		}
		if err := os.Chmod(keyPath, 0o600); err != nil { // repair a key made readable by hand
			return nil, nil, false, err
		}
		return cert, key, false, nil
	case certExists || keyExists:
		// Never overwrite half a CA: the missing half may be somewhere the user still needs it.
		return nil, nil, false, fmt.Errorf("found only one of %s and %s; restore the other or delete both", certPath, keyPath)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Pizza Joint mesh dev CA", Organization: []string{"Pizza Joint mesh (development)"}},
		NotBefore:             opts.Now.Add(-time.Hour), // tolerate small clock skew between machines
		NotAfter:              opts.Now.Add(opts.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaf certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, false, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, err
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, nil, false, err
	}
	return cert, key, true, nil
}

// loadServer returns the current server certificate if it can stay, or an error saying why it cannot.
func loadServer(certPath, keyPath string, ca *x509.Certificate, names []string, opts options) (*x509.Certificate, error) {
	cert, _, err := loadPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, usage := range extKeyUsages(opts) {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: opts.Now,
			KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		if err := cert.VerifyHostname(n); err != nil {
			return nil, err
		}
	}
	if cert.NotAfter.Sub(opts.Now) < opts.RenewBefore {
		return nil, fmt.Errorf("expires %s", cert.NotAfter)
	}
	if err := os.Chmod(keyPath, 0o600); err != nil {
		return nil, err
	}
	return cert, nil
}

// extKeyUsages: server authentication, and client authentication too when asked.
func extKeyUsages(opts options) []x509.ExtKeyUsage {
	if opts.ClientAuth {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
}

func issueServer(certPath, keyPath string, ca *x509.Certificate, caKey crypto.Signer, names []string, opts options) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"Pizza Joint mesh (development)"}},
		NotBefore:    opts.Now.Add(-time.Hour),
		NotAfter:     opts.Now.Add(opts.ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature, // ECDSA keys sign; there is no key encipherment
		ExtKeyUsage:  extKeyUsages(opts),
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return cert, writePair(certPath, keyPath, der, key)
}

// writePair writes the key before the certificate: a server reloading in between sees a mismatched pair, which
// it rejects and retries, never a certificate whose key is not on disk yet.
func writePair(certPath, keyPath string, certDER []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
}

// writeFileAtomic writes a temp file in the same folder and renames it over path, so readers see the old file or
// the new one, never a partial one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	// Set the mode before any byte is written, so a key is never readable by others, even briefly.
	if err = f.Chmod(perm); err != nil {
		_ = f.Close()
		return err
	}
	if _, err = f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if dir, derr := os.Open(filepath.Dir(path)); derr == nil { // persist the rename; best effort
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// loadPair reads a PEM certificate and its PEM private key and checks that they belong together.
func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: no PEM private key", keyPath)
	}
	key, err := parseKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match the key in %s", certPath, keyPath)
	}
	return cert, key, nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("unsupported private key type")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unparseable private key")
}

// newSerial returns a random positive 127-bit serial (RFC 5280 wants positive and at most 20 bytes).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

// exists reports false only for a file that is surely absent; any other stat error counts as present, so the
// later read reports it instead of the file being overwritten.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
