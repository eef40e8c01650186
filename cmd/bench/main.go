// Command bench measures what the mesh costs: raw MySQL inserts (the ceiling), the services wired directly,
// and the full mesh, interleaved in one run on this machine. It prints a markdown report and writes it into
// docs/benchmarks.md. It is a benchmark, not a test: it never fails on a number, only when a stack does not
// start or a setup serves no order at all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pizzajoint/mesh/internal/bench"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		levels   = fs.String("levels", "1,16,64,256", "concurrent clients, comma-separated")
		warmup   = fs.Duration("warmup", 3*time.Second, "warm-up before each measurement (not counted)")
		duration = fs.Duration("duration", 10*time.Second, "measured time per setup and level")
		out      = fs.String("out", "docs/benchmarks.md", "markdown file to write the results into (empty: none)")
		profile  = fs.String("profile", "", "folder for CPU profiles of gateway and order during the mesh run (turns on pprof)")
		profileC = fs.Int("profile-clients", 64, "level at which -profile takes the profiles")
		pool     = fs.Int("ceiling-pool", 32, "the ceiling's MySQL pool size (the order service's default is 32)")
		env      = fs.String("env", "", "KEY=VALUE,... for both stacks' services, e.g. ORDER_DB_MAX_OPEN=8")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage is printed; asking for it is no failure
		}
		return err
	}
	opts := bench.Options{Warmup: *warmup, Duration: *duration, ProfileDir: *profile, ProfileClients: *profileC,
		CeilingPool: *pool, StackEnv: map[string]string{}, Log: stderr}
	for _, kv := range strings.Split(*env, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("-env: %q is not KEY=VALUE", kv)
		}
		opts.StackEnv[k] = v
	}
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("-levels: %q is not a positive number", s)
		}
		opts.Levels = append(opts.Levels, n)
	}

	// Ctrl-C stops the load and then the stacks, instead of leaving them behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, opts)
	if err != nil && len(rep.Measurements) == 0 {
		return err
	}
	md := rep.Markdown()
	fmt.Fprintln(stdout, md)
	if err == nil {
		err = rep.Broken()
	}
	if err != nil {
		return fmt.Errorf("%w (results above; %s not written)", err, *out)
	}
	if *out != "" {
		if werr := bench.WriteSection(*out, bench.MeshSection, md); werr != nil {
			return werr
		}
		fmt.Fprintln(stderr, "bench: wrote", *out)
	}
	if *profile != "" {
		fmt.Fprintf(stderr, "bench: profiles in %s; read them with: go tool pprof -top %s/gateway-cpu.pprof\n", *profile, *profile)
	}
	return nil
}
