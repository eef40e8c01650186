// Command devcerts writes a development CA and a server certificate for localhost into a folder (certs/ by
// default), so the gateway can serve HTTPS locally and clients can trust it with --cacert certs/ca.pem.
//
//	go run ./cmd/devcerts -out certs [-name server|vault|consul] [-hosts pizza.local,10.0.0.5] [-renew] [-client-auth]
//	                      [-to DIR -owner UID:GID [-as STEM]] [-ca-to DIR]
//
// -to copies the certificate, its key and ca.pem into DIR for the one user (-owner) that serves with them, and
// -ca-to copies ca.pem alone: Compose gives each container a volume of its own, never the CA's key. -as names the
// copied pair (STEM.pem, STEM-key.pem): each node of a cluster gets a pair of its own (-name vault-2) under the
// file names the cluster's one configuration reads (-as vault).
//
// It keeps an existing CA (so clients' trust keeps working) and re-issues the server certificate only when asked,
// when it is missing, invalid, lacks a requested name, or expires within a week.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/servicedir"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		logger.Error("devcerts failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("devcerts", flag.ContinueOnError)
	out := fs.String("out", "certs", "folder for ca.pem, ca-key.pem, server.pem, server-key.pem")
	hosts := fs.String("hosts", "", "extra comma-separated DNS names or IPs for the server certificate")
	renew := fs.Bool("renew", false, "re-issue the server certificate even if it is still valid (the CA is kept)")
	name := fs.String("name", "server", "certificate file stem: server (the gateway: server.pem), vault, consul, …")
	to := fs.String("to", "", "also copy the certificate, its key and ca.pem into this folder")
	owner := fs.String("owner", "", "numeric uid:gid to own the files copied by -to (needs root)")
	as := fs.String("as", "", "file stem of the pair copied by -to (default: -name)")
	caTo := fs.String("ca-to", "", "also copy ca.pem (public) into this folder")
	clientAuth := fs.Bool("client-auth", false, "good for TLS clients too (a Consul server's RPC certificate)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	opts := defaultOptions(*out, time.Now())
	opts.Renew = *renew
	opts.Name = *name
	opts.ClientAuth = *clientAuth
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			opts.Hosts = append(opts.Hosts, h)
		}
	}
	res, err := ensureCerts(opts)
	if err != nil {
		return err
	}
	logger.Info("dev CA", "file", res.CAFile, "created", res.CACreated, "expires", res.CAExpires.Format(time.DateOnly))
	logger.Info("server certificate", "file", res.ServerFile, "issued", res.ServerIssued,
		"serial", res.ServerSerial, "names", strings.Join(res.ServerNames, ","),
		"expires", res.ServerExpires.Format(time.RFC3339))
	if *to != "" {
		stem := *as
		if stem == "" {
			stem = *name
		}
		if err := deliverPair(res, *to, *owner, stem, logger); err != nil {
			return err
		}
		logger.Info("certificate delivered", "to", *to, "owner", *owner)
	}
	if *caTo != "" {
		d, err := servicedir.Create(*caTo, 0o755, logger)
		if err != nil {
			return err
		}
		defer d.Close()
		if err := installFile(d, res.CAFile, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// deliverPair copies the certificate and its key (0600, for owner alone) as stem.pem and stem-key.pem, and
// ca.pem, into dir. dir may be a volume
// its owner already holds (a second run): it is written without following any link planted there
// (platform/servicedir), and a planted link fails the run.
func deliverPair(res result, dir, owner, stem string, logger *slog.Logger) error {
	d, err := servicedir.Create(dir, 0o755, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	if owner != "" {
		o, err := servicedir.ParseOwner(owner)
		if err != nil {
			return fmt.Errorf("-owner: %w", err)
		}
		if err := d.Own(o, 0o755); err != nil {
			return err
		}
	}
	keyFile := strings.TrimSuffix(res.ServerFile, ".pem") + "-key.pem"
	for _, f := range []struct {
		src, as string
		perm    os.FileMode
	}{{res.CAFile, "ca.pem", 0o644}, {res.ServerFile, stem + ".pem", 0o644}, {keyFile, stem + "-key.pem", 0o600}} {
		if err := installFileAs(d, f.src, f.as, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// installFile copies src (root's, in the CA's folder) into d under its base name, atomically: a process that
// reloads the file never reads half of it.
func installFile(d *servicedir.Dir, src string, perm os.FileMode) error {
	return installFileAs(d, src, filepath.Base(src), perm)
}

// installFileAs is installFile under another name.
func installFileAs(d *servicedir.Dir, src, name string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return d.WriteFile(name, b, perm)
}
