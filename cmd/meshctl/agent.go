package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pizzajoint/mesh/platform/consulagent"
	"github.com/pizzajoint/mesh/platform/probe"
)

// consulCmd runs `meshctl consul [-addr A] [-cacert F] [-timeout D] leader | sidecar-port ID | passing ID`: the
// questions scripts/stack.sh waits on, answered by exit status (and the port on stdout). sidecar-port and
// passing ask with the instance's own token, read on stdin: never on argv or in the environment, where other
// accounts could read it.
func consulCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consul", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", os.Getenv("CONSUL_HTTP_ADDR"), "the agent or a front of it: unix:///path, http(s)://host:port")
	caFile := fs.String("cacert", "", "https: the CA that signed the listener's certificate")
	timeout := fs.Duration("timeout", consulagent.DefaultTimeout, "give up after this long (reading the token included)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cfg := consulagent.Config{Addr: *addr, CAFile: *caFile, Timeout: *timeout}

	switch q := fs.Arg(0); {
	case q == "leader" && fs.NArg() == 1:
		a, err := consulagent.New(cfg)
		if err != nil {
			return err
		}
		_, err = a.Leader(ctx)
		return err
	case (q == "sidecar-port" || q == "passing") && fs.NArg() == 2:
		token, err := readToken(ctx, stdin)
		if err != nil {
			return err
		}
		cfg.Token = token
		a, err := consulagent.New(cfg)
		if err != nil {
			return err
		}
		if q == "passing" {
			return a.Passing(ctx, fs.Arg(1))
		}
		port, err := a.SidecarPort(ctx, fs.Arg(1))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, port)
		return err
	default:
		return errors.New("usage: meshctl consul [-addr A] [-cacert F] [-timeout D] leader | sidecar-port ID | passing ID " +
			"(these two read the instance's token on stdin)")
	}
}

// readToken reads one line from r, giving up when ctx ends: a caller that forgot the pipe must not hang the stack.
func readToken(ctx context.Context, r io.Reader) (string, error) {
	type line struct {
		s   string
		err error
	}
	got := make(chan line, 1)
	go func() {
		s, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
		got <- line{strings.TrimSpace(s), err}
	}()
	select {
	case l := <-got:
		if l.err == nil && l.s == "" {
			l.err = errors.New("no token on stdin")
		}
		return l.s, l.err
	case <-ctx.Done():
		return "", fmt.Errorf("reading the token on stdin: %w", ctx.Err())
	}
}

// vaultCmd runs `meshctl vault [-addr A] [-cacert F] [-timeout D] answers`: exit 0 once Vault's listener gives an
// HTTP answer of any status to GET /v1/sys/health. Sealed and uninitialised are answers: the server has started,
// and bootstrap or unseal take it from there.
func vaultCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vault", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", os.Getenv("VAULT_ADDR"), "Vault's address, https://host:port")
	caFile := fs.String("cacert", os.Getenv("VAULT_CACERT"), "the CA that signed Vault's listener certificate")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "answers" || *addr == "" {
		return errors.New("usage: meshctl vault [-addr A] [-cacert F] [-timeout D] answers")
	}
	return probe.Answers(ctx, strings.TrimSuffix(*addr, "/")+"/v1/sys/health", *caFile, *timeout)
}
