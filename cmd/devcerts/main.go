// Command devcerts writes a development CA and a server certificate for localhost into a folder (certs/ by
// default), so the gateway can serve HTTPS locally and clients can trust it with --cacert certs/ca.pem.
//
//	go run ./cmd/devcerts -out certs [-name server|vault|consul] [-hosts pizza.local,10.0.0.5] [-renew]
//
// It keeps an existing CA (so clients' trust keeps working) and re-issues the server certificate only when asked,
// when it is missing, invalid, lacks a requested name, or expires within a week.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	opts := defaultOptions(*out, time.Now())
	opts.Renew = *renew
	opts.Name = *name
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
	return nil
}
