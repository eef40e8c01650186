// Command devcerts writes a development CA and a server certificate for localhost into a folder (certs/ by
// default), so the gateway can serve HTTPS locally and clients can trust it with --cacert certs/ca.pem.
//
//	go run ./cmd/devcerts -out certs [-name server|vault|consul] [-hosts pizza.local,10.0.0.5] [-renew] [-client-auth]
//	                      [-to DIR -owner UID:GID] [-ca-to DIR]
//
// -to copies the certificate, its key and ca.pem into DIR for the one user (-owner) that serves with them, and
// -ca-to copies ca.pem alone: Compose gives each container a volume of its own, never the CA's key.
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
	"strconv"
	"strings"
	"time"
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
		if err := deliverPair(res, *to, *owner); err != nil {
			return err
		}
		logger.Info("certificate delivered", "to", *to, "owner", *owner)
	}
	if *caTo != "" {
		if err := installFile(res.CAFile, filepath.Join(*caTo, caCertName), 0o644, -1, -1); err != nil {
			return err
		}
	}
	return nil
}

// deliverPair copies the certificate, its key (0600, for owner alone) and ca.pem into dir.
func deliverPair(res result, dir, owner string) error {
	uid, gid := -1, -1
	if owner != "" {
		u, g, ok := strings.Cut(owner, ":")
		var err1, err2 error
		uid, err1 = strconv.Atoi(u)
		gid, err2 = strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return fmt.Errorf("-owner %q: want numeric uid:gid", owner)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	keyFile := strings.TrimSuffix(res.ServerFile, ".pem") + "-key.pem"
	for _, f := range []struct {
		src  string
		perm os.FileMode
	}{{res.CAFile, 0o644}, {res.ServerFile, 0o644}, {keyFile, 0o600}} {
		if err := installFile(f.src, filepath.Join(dir, filepath.Base(f.src)), f.perm, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// installFile writes src's content to dst with perm and owner (uid -1: unchanged), replacing dst atomically so
// a process that reloads the file never reads half of it.
func installFile(src, dst string, perm os.FileMode, uid, gid int) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Chown(tmp, uid, gid); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dst)
}
