package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"path/filepath"
	"regexp"

	"github.com/pizzajoint/mesh/platform/servicedir"
)

var gossipKeyLine = regexp.MustCompile(`(?m)^encrypt\s*=\s*"([A-Za-z0-9+/=]+)"`)

// gossipKey runs `meshctl gossip-key [-owner UID:GID] FILE...`: one gossip encryption key for every Consul agent
// of a Compose stack, written as an agent configuration (encrypt = "…") into each agent's own volume. A key that
// one of the files already holds is kept, so agents that have joined with it keep talking. Each volume may
// already belong to its agent's user: it is read and written without following a link planted there
// (platform/servicedir), and a planted link fails the command.
func gossipKey(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gossip-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	owner := fs.String("owner", "", "numeric uid:gid to own the files and their folders (the agents' user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		return errors.New("usage: meshctl gossip-key [-owner UID:GID] FILE [FILE ...]")
	}
	var o *servicedir.Owner
	if *owner != "" {
		parsed, err := servicedir.ParseOwner(*owner)
		if err != nil {
			return fmt.Errorf("-owner: %w", err)
		}
		o = &parsed
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "meshctl")
	dirs := make([]*servicedir.Dir, len(files))
	defer func() {
		for _, d := range dirs {
			if d != nil {
				d.Close()
			}
		}
	}()
	key := ""
	for i, f := range files {
		d, err := servicedir.Create(filepath.Dir(f), 0o700, logger)
		if err != nil {
			return err
		}
		dirs[i] = d
		if o != nil {
			if err := d.Own(*o, 0o700); err != nil {
				return err
			}
		}
		b, err := d.ReadFile(filepath.Base(f))
		switch {
		case errors.Is(err, iofs.ErrNotExist):
		case err != nil:
			return err
		case key == "":
			if m := gossipKeyLine.FindSubmatch(b); m != nil {
				key = string(m[1])
			}
		}
	}
	if key == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		key = base64.StdEncoding.EncodeToString(b)
	}
	conf := "# Written by meshctl gossip-key: encrypts gossip between this stack's Consul agents. Secret.\n" +
		"encrypt = \"" + key + "\"\n"
	for i, f := range files {
		if err := dirs[i].WriteFile(filepath.Base(f), []byte(conf), 0o600); err != nil {
			return err
		}
	}
	return nil
}
