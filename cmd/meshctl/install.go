package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/pizzajoint/mesh/platform/servicedir"
)

// install runs `meshctl install [-owner UID:GID] [-mode 0600] DIR SRC NAME [SRC NAME ...]`: each root-readable SRC
// copied to DIR/NAME (NAME may name one folder inside DIR, e.g. tls/server.pem) for the service that owns DIR.
// It is the shell's `cp` and `mv` into a service's folder without following any link the service planted there
// (platform/servicedir); a planted link fails the command and is logged. Files are written in the order given,
// each replaced atomically.
func install(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	owner := fs.String("owner", "", "numeric uid:gid that DIR and the files belong to (default: DIR's owner)")
	modeFlag := fs.String("mode", "0600", "octal mode of the files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 3 || len(rest)%2 != 1 {
		return errors.New("usage: meshctl install [-owner UID:GID] [-mode 0600] DIR SRC NAME [SRC NAME ...]")
	}
	mode, err := strconv.ParseUint(*modeFlag, 8, 32)
	if err != nil || mode&^0o777 != 0 {
		return fmt.Errorf("-mode %q: want octal permission bits", *modeFlag)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "meshctl")
	d, err := servicedir.Create(rest[0], 0o700, logger)
	if err != nil {
		return err
	}
	defer d.Close()
	if *owner != "" {
		o, err := servicedir.ParseOwner(*owner)
		if err != nil {
			return err
		}
		if err := d.Own(o, 0o700); err != nil {
			return err
		}
	}
	for i := 1; i < len(rest); i += 2 {
		if err := installOne(d, rest[i], rest[i+1], os.FileMode(mode)); err != nil {
			return err
		}
	}
	return nil
}

func installOne(d *servicedir.Dir, src, name string, mode os.FileMode) error {
	b, err := os.ReadFile(src) // the source is root's (certs/): followed as given
	if err != nil {
		return err
	}
	target := d
	if sub, file, ok := strings.Cut(name, "/"); ok {
		s, err := d.Sub(sub, 0o700)
		if err != nil {
			return err
		}
		defer s.Close()
		target, name = s, file
	}
	return target.WriteFile(name, b, mode)
}
