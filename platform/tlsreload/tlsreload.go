// Package tlsreload serves a TLS certificate that is re-read from its files when they change, so a renewed
// certificate takes effect without restarting the server.
//
//	r, err := tlsreload.New(certFile, keyFile, logger)
//	go r.Run(ctx)                       // stats the files every second
//	srv := &http.Server{TLSConfig: r.TLSConfig(), ...}
//	srv.ListenAndServeTLS("", "")       // empty names: the certificate comes from TLSConfig
//	// on SIGHUP: r.Reload()
//
// Handshakes only load an atomic pointer: all file access happens in Run's ticker or in Reload.
package tlsreload

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often Run checks the files: a second is quick enough for a renewal and a stat of
// two files per second costs nothing.
const DefaultPollInterval = time.Second

// Reloader holds the current certificate and replaces it when the files change and the new pair is valid.
type Reloader struct {
	certFile, keyFile string
	logger            *slog.Logger
	interval          time.Duration

	cert atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // serialises reloads from Run and Reload
	seen [2]os.FileInfo
}

// Option configures a Reloader.
type Option func(*Reloader)

// WithPollInterval sets how often Run checks the files (DefaultPollInterval otherwise).
func WithPollInterval(d time.Duration) Option {
	return func(r *Reloader) {
		if d > 0 {
			r.interval = d
		}
	}
}

// New loads the pair once and fails if it cannot, so a server never starts without a certificate.
func New(certFile, keyFile string, logger *slog.Logger, opts ...Option) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, logger: logger, interval: DefaultPollInterval}
	for _, o := range opts {
		o(r)
	}
	if _, err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate returns the current certificate; it is tls.Config.GetCertificate and does no I/O.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate returns the current certificate, e.g. to report its expiry.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// TLSConfig returns a server config using the reloaded certificate, with TLS 1.2 as the minimum.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
	}
}

// Reload re-reads the files now, whether or not they look changed (for SIGHUP). On error the current
// certificate stays in use.
func (r *Reloader) Reload() error {
	_, err := r.reload(true)
	return err
}

// Run checks the files every poll interval and reloads them when their size, mtime or identity changed, until
// ctx is done. A failed reload keeps the current certificate and is retried when the files change again.
func (r *Reloader) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = r.reload(false) // reload logs its own outcome
		}
	}
}

// reload loads the pair if force is set or the files changed since the last attempt. It reports whether a new
// certificate was installed.
func (r *Reloader) reload(force bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	// Stat before reading: if a file changes in between, the next check sees a change and reads again; the
	// other order could record the new state with the old contents and miss the change for good.
	var now [2]os.FileInfo
	for i, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			if !force && r.seen[i] == nil {
				return false, nil // still missing, already reported
			}
			r.seen[i] = nil
			return false, r.fail(err)
		}
		now[i] = fi
	}
	if !force && sameFile(now[0], r.seen[0]) && sameFile(now[1], r.seen[1]) {
		return false, nil
	}
	// Record the attempt even if it fails, so a broken file is reported once, not every tick; writing the
	// fixed file changes it again.
	r.seen = now

	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return false, r.fail(err)
	}
	old := r.cert.Swap(&cert)
	leaf := cert.Leaf // set by LoadX509KeyPair since Go 1.23
	attrs := []any{"cert_file", r.certFile, "serial", leaf.SerialNumber.Text(16),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "names", leaf.DNSNames}
	if old == nil {
		r.logger.Info("TLS certificate loaded", attrs...)
	} else {
		r.logger.Info("TLS certificate reloaded", attrs...)
	}
	if time.Now().After(leaf.NotAfter) {
		r.logger.Warn("TLS certificate has expired", "cert_file", r.certFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return true, nil
}

// fail wraps and logs a load error. crypto/tls errors name the problem ("private key does not match public
// key"), never key bytes, so logging them is safe.
func (r *Reloader) fail(err error) error {
	err = fmt.Errorf("tlsreload: load %s / %s: %w", r.certFile, r.keyFile, err)
	if r.cert.Load() == nil {
		return err // New reports it to the caller; there is nothing to keep yet
	}
	r.logger.Warn("TLS certificate not reloaded; keeping the current one", "err", err)
	return err
}

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return false
	}
	// os.SameFile catches a rename over the file (atomic writers, Kubernetes' symlink swap) even when size and
	// mtime happen to match.
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
