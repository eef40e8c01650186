// Package svcmain is the opening every service's main shares: the probe subcommand of the images' health
// checks, configuration from the environment and flags, the logger, the signal context, the debug listener,
// and the errgroup that joins every background goroutine. A main then only wires its service.
package svcmain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ardanlabs/conf/v3"
	"github.com/pizzajoint/mesh/platform/applog"
	"github.com/pizzajoint/mesh/platform/httpserver"
	"github.com/pizzajoint/mesh/platform/probe"
	"github.com/pizzajoint/mesh/platform/tracing"
	"golang.org/x/sync/errgroup"
)

// Common is the configuration every service has. Embedded in a service's config struct its fields keep their
// names: ORDER_LOG_LEVEL, GATEWAY_DEBUG_ADDR.
type Common struct {
	Log struct {
		Level string `conf:"default:info,help:debug, info, warn or error"`
	}
	// Debug.Addr serves pprof when set (loopback only), for profiling.
	Debug struct {
		Addr string `conf:"help:pprof listen address on loopback (empty: off)"`
	}
	// Trace exports spans over OTLP when an endpoint is set (ORDER_TRACE_ENDPOINT); off by default.
	Trace tracing.Config
}

func (c *Common) common() *Common { return c }

// Config is a pointer to a service's config struct that embeds Common.
type Config interface{ common() *Common }

// ErrHelpShown ends a run that printed its usage (--help): not a failure.
var ErrHelpShown = errors.New("usage shown")

// Main is a service's main. `<name> probe URL` is the images' health check (they have no shell, curl or
// wget); anything else is run, and an error from it is printed and exits 1.
func Main(name string, run func(ctx context.Context, stderr io.Writer) error) {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probe.Main(os.Args[2:], os.Stderr))
	}
	if err := run(context.Background(), os.Stderr); err != nil && !errors.Is(err, ErrHelpShown) {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Process is a started service: its context, its logger and the group its goroutines run in.
type Process struct {
	// Ctx ends at SIGINT or SIGTERM, or when a goroutine of the group fails.
	Ctx    context.Context
	Logger *slog.Logger
	group  *errgroup.Group
	stop   context.CancelFunc
	flush  func(context.Context) error // the spans still buffered, sent at the end
}

// Go runs f in the process's group: Finish waits for it. f must return once Ctx is done.
func (p *Process) Go(f func() error) { p.group.Go(f) }

// Finish ends the process: it cancels Ctx, waits for every goroutine of the group and returns err, or else
// the first error of the group.
func (p *Process) Finish(err error) error {
	p.stop()
	if werr := p.group.Wait(); err == nil {
		err = werr
	}
	if ferr := p.flush(context.Background()); ferr != nil {
		p.Logger.Warn("spans not flushed", "err", ferr)
	}
	return err
}

// Start reads cfg from the environment under prefix (ORDER_…) and from flags, makes the service's logger and
// logs the configuration (fields tagged `mask` are masked), and serves the debug listener when configured.
// The caller ends the process with Finish.
func Start(ctx context.Context, stderr io.Writer, service, prefix string, cfg Config) (*Process, error) {
	help, err := conf.Parse(prefix, cfg)
	if errors.Is(err, conf.ErrHelpWanted) {
		fmt.Fprintln(stderr, help)
		return nil, ErrHelpShown
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := cfg.common()
	logger, err := applog.New(stderr, service, c.Log.Level)
	if err != nil {
		return nil, err
	}
	if s, err := conf.String(cfg); err == nil {
		logger.Info("config", "values", s)
	}
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(ctx)
	g, ctx := errgroup.WithContext(ctx)
	flush, err := tracing.Start(ctx, service, c.Trace, logger)
	if err != nil {
		cancel()
		stopSignals()
		return nil, err
	}
	p := &Process{Ctx: ctx, Logger: logger, group: g, stop: func() { cancel(); stopSignals() }, flush: flush}
	serveDebug, err := httpserver.ServeDebug(ctx, c.Debug.Addr, logger)
	if err != nil {
		return nil, p.Finish(fmt.Errorf("debug server: %w", err))
	}
	p.Go(serveDebug)
	return p, nil
}
