package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

var gossipKeyLine = regexp.MustCompile(`(?m)^encrypt\s*=\s*"([A-Za-z0-9+/=]+)"`)

// gossipKey runs `meshctl gossip-key [-owner UID:GID] FILE...`: one gossip encryption key for every Consul agent
// of a Compose stack, written as an agent configuration (encrypt = "…") into each agent's own volume. A key that
// one of the files already holds is kept, so agents that have joined with it keep talking.
func gossipKey(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gossip-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	owner := fs.String("owner", "", "numeric uid:gid to own the files (the agents' user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := fs.Args()
	if len(files) == 0 {
		return errors.New("usage: meshctl gossip-key [-owner UID:GID] FILE [FILE ...]")
	}
	uid, gid := -1, -1
	if *owner != "" {
		u, g, ok := strings.Cut(*owner, ":")
		var e1, e2 error
		uid, e1 = strconv.Atoi(u)
		gid, e2 = strconv.Atoi(g)
		if !ok || e1 != nil || e2 != nil {
			return fmt.Errorf("-owner %q: want numeric uid:gid", *owner)
		}
	}
	key := ""
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			if m := gossipKeyLine.FindSubmatch(b); m != nil {
				key = string(m[1])
				break
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
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		tmp := f + ".new"
		if err := os.WriteFile(tmp, []byte(conf), 0o600); err != nil {
			return err
		}
		if uid >= 0 {
			if err := os.Chown(tmp, uid, gid); err != nil {
				return err
			}
		}
		if err := os.Rename(tmp, f); err != nil {
			return err
		}
	}
	return nil
}
