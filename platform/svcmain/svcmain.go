// Package svcmain is the opening every service's main shares: the probe subcommand of the images' health
// checks, configuration from the environment and flags, the logger, the signal context and the debug
// listener. A main then only wires its service (ardanlabs/service's run(ctx) error, in one place).
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

// Start reads cfg from the environment under prefix (ORDER_…) and from flags, makes the service's logger and
// logs the configuration (fields tagged `mask` are masked), and starts the debug listener when configured.
// The context it returns ends at SIGINT or SIGTERM; stop releases the signals.
func Start(ctx context.Context, stderr io.Writer, service, prefix string, cfg Config) (_ context.Context, stop context.CancelFunc, _ *slog.Logger, err error) {
	help, err := conf.Parse(prefix, cfg)
	if errors.Is(err, conf.ErrHelpWanted) {
		fmt.Fprintln(stderr, help)
		return nil, nil, nil, ErrHelpShown
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("config: %w", err)
	}
	c := cfg.common()
	logger, err := applog.New(stderr, service, c.Log.Level)
	if err != nil {
		return nil, nil, nil, err
	}
	if s, err := conf.String(cfg); err == nil {
		logger.Info("config", "values", s)
	}
	ctx, stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	if err := httpserver.ServeDebug(ctx, c.Debug.Addr, logger); err != nil {
		stop()
		return nil, nil, nil, fmt.Errorf("debug server: %w", err)
	}
	return ctx, stop, logger, nil
}
