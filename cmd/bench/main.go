// Command bench measures what the mesh costs: raw MySQL inserts (the ceiling), the services wired directly,
// and the full mesh, interleaved in one run on this machine. It prints a markdown report and writes it into
// docs/benchmarks.md. It is a benchmark, not a test: it never fails on a number, only when a stack does not
// start or a setup serves no order at all.
//
// `bench events` measures order's event path (NATS JetStream): the time from a staff
// status change to its frame on the customer's stream, with 100 and 1,000 streams open. It fails when a
// stream misses or repeats a frame, or a request is refused. Each writes only its own section of the file.
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
	if len(args) > 0 && args[0] == "events" {
		return runEvents(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var (
		levels   = fs.String("levels", "1,16,64,256", "concurrent clients, comma-separated")
		warmup   = fs.Duration("warmup", 3*time.Second, "warm-up before each measurement (not counted)")
		duration = fs.Duration("duration", 10*time.Second, "measured time per setup and level")
		out      = fs.String("out", "docs/benchmarks.md", "markdown file to write the results into (empty: none)")
		profile  = fs.String("profile", "", "folder for CPU profiles of gateway and order during the mesh run (turns on pprof)")
		profileC = fs.Int("profile-clients", 64, "level at which -profile takes the profiles")
		pool     = fs.Int("ceiling-pool", 32, "the ceiling's MySQL pool size (the order service's default is 32)")
		env      = fs.String("env", "", "KEY=VALUE,... for every stack's services, e.g. ORDER_DB_MAX_OPEN=8")
		variants = fs.String("variants", DefaultVariants,
			"more mesh stacks measured in the same run, NAME:KEY=VALUE,... separated by ';' (empty: none)")
		rates = fs.String("rates", "100,300", "fixed rates in orders/s at which direct and mesh run open loop, comma-separated (empty: none)")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage is printed; asking for it is no failure
		}
		return err
	}
	opts := bench.Options{Warmup: *warmup, Duration: *duration, ProfileDir: *profile, ProfileClients: *profileC,
		CeilingPool: *pool, Log: stderr}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command %q (the one command is events)", fs.Arg(0))
	}
	var err error
	if opts.StackEnv, err = parseEnv(*env); err != nil {
		return fmt.Errorf("-env: %w", err)
	}
	if opts.Levels, err = parseLevels(*levels); err != nil {
		return err
	}
	if opts.Variants, err = parseVariants(*variants); err != nil {
		return err
	}
	if *rates != "" {
		if opts.Rates, err = parseList("-rates", *rates); err != nil {
			return err
		}
	}

	// Ctrl-C stops the load and then the stacks, instead of leaving them behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, opts)
	if err := publish(rep, len(rep.Measurements) > 0, err, *out, bench.MeshSection, stdout, stderr); err != nil {
		return err
	}
	if *profile != "" {
		fmt.Fprintf(stderr, "bench: profiles in %s; read them with: go tool pprof -top %s/gateway-cpu.pprof\n", *profile, *profile)
	}
	return nil
}

// runEvents is `bench events`: the event path, level by level, into the events section of -out.
func runEvents(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench events", flag.ContinueOnError)
	var (
		levels  = fs.String("levels", "100,1000", "open customer streams (one order each), comma-separated")
		staff   = fs.Int("staff", 3, "open staff streams in every cell")
		changes = fs.Int("changes", 300, "status changes per cell, spread over the open orders (at most 3 per order)")
		rate    = fs.Float64("rate", 20, "status changes per second")
		out     = fs.String("out", "docs/benchmarks.md", "markdown file to write the results into (empty: none)")
		env     = fs.String("env", "", "KEY=VALUE,... for the stack's services")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench events: unexpected %q", fs.Arg(0))
	}
	opts := bench.EventOptions{StaffStreams: *staff, Changes: *changes, Rate: *rate, Log: stderr}
	var err error
	if opts.StackEnv, err = parseEnv(*env); err != nil {
		return fmt.Errorf("-env: %w", err)
	}
	if opts.Levels, err = parseLevels(*levels); err != nil {
		return err
	}
	if err := opts.Check(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.RunEvents(ctx, opts)
	return publish(rep, len(rep.Cells) > 0, err, *out, bench.EventsSection, stdout, stderr)
}

// report is what a run returns: its markdown, and whether its results hold (every order served, every frame
// once).
type report interface {
	Markdown() string
	Broken() error
}

// publish prints what the run measured, then writes it into its section of path, unless the run failed or its
// results are broken (the file then keeps its last good run).
func publish(rep report, measured bool, runErr error, path string, s bench.Section, stdout, stderr io.Writer) error {
	if runErr != nil && !measured {
		return runErr
	}
	md := rep.Markdown()
	fmt.Fprintln(stdout, md)
	err := runErr
	if err == nil {
		err = rep.Broken()
	}
	if err != nil {
		return fmt.Errorf("%w (results above; %s not written)", err, path)
	}
	return write(path, s, md, stderr)
}

// write puts md into its section of the file at path, the one way both commands update it.
func write(path string, s bench.Section, md string, stderr io.Writer) error {
	if path == "" {
		return nil
	}
	if err := bench.WriteSection(path, s, md); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "bench: wrote", path)
	return nil
}

func parseEnv(list string) (map[string]string, error) {
	env := map[string]string{}
	for _, kv := range strings.Split(list, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		env[k] = v
	}
	return env, nil
}

// DefaultVariants are what `make bench` sets beside the mesh, which runs with the stack's defaults (every
// order traced, semi-synchronous replication): what tracing costs, and what semi-synchronous replication costs
// against asynchronous.
const DefaultVariants = "untraced:STACK_TRACES=0;async:DB_SEMI_SYNC=0"

// parseVariants reads -variants: NAME:KEY=VALUE,... separated by ';'.
func parseVariants(list string) ([]bench.Variant, error) {
	var out []bench.Variant
	seen := map[string]bool{}
	for _, spec := range strings.Split(list, ";") {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		name, settings, _ := strings.Cut(spec, ":")
		if name == "" || strings.ContainsAny(name, " \t=,") {
			return nil, fmt.Errorf("-variants: %q does not start with a name (NAME:KEY=VALUE,...)", spec)
		}
		if seen[name] {
			return nil, fmt.Errorf("-variants: %q is named twice", name)
		}
		seen[name] = true
		env, err := parseEnv(settings)
		if err != nil {
			return nil, fmt.Errorf("-variants: %s: %w", name, err)
		}
		if len(env) == 0 {
			return nil, fmt.Errorf("-variants: %s sets nothing", name)
		}
		out = append(out, bench.Variant{Name: name, Env: env})
	}
	return out, nil
}

func parseLevels(list string) ([]int, error) { return parseList("-levels", list) }

// parseList reads a flag's comma-separated positive numbers.
func parseList(flag, list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}
