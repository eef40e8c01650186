// Package probe is the health check of the project's container images: a tiny HTTP(S) GET with a timeout
// that exits 0 on a 2xx answer and 1 otherwise. The images are FROM scratch (no shell, curl or wget), so each
// binary carries it as a `probe` subcommand for Compose's healthchecks.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Main runs `<binary> probe [-cacert FILE] [-insecure] [-timeout D] URL` and returns the exit code.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caFile := fs.String("cacert", "", "CA certificate that signed the server's certificate (HTTPS)")
	insecure := fs.Bool("insecure", false, "skip certificate verification (a loopback check of the process's own listener)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: probe [-cacert FILE] [-insecure] [-timeout 3s] URL")
		return 2
	}
	if err := Get(context.Background(), fs.Arg(0), *caFile, *insecure, *timeout); err != nil {
		fmt.Fprintln(stderr, "probe:", err)
		return 1
	}
	return 0
}

// Get GETs url and reports an error unless the answer is 2xx within timeout.
func Get(ctx context.Context, url, caFile string, insecure bool, timeout time.Duration) error {
	code, status, err := get(ctx, url, caFile, insecure, timeout)
	if err != nil {
		return err
	}
	if code < 200 || code > 299 {
		return errors.New(status)
	}
	return nil
}

// Answers GETs url and reports an error unless an HTTP answer, of any status, comes within timeout: a server
// that is up but not ready (Vault sealed or uninitialised answers 5xx) has started.
func Answers(ctx context.Context, url, caFile string, timeout time.Duration) error {
	_, _, err := get(ctx, url, caFile, false, timeout)
	return err
}

// get returns the status of url's answer.
func get(ctx context.Context, url, caFile string, insecure bool, timeout time.Duration) (int, string, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // opt-in, loopback only
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return 0, "", err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return 0, "", fmt.Errorf("no certificate in %s", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true, Proxy: nil},
		// A redirect is an answer of its own; following it could leave the host being checked.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, resp.Status, nil
}
