package main

import (
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestGossipKeyIsSharedAndKept(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "server", "gossip.hcl"), filepath.Join(dir, "agent", "gossip.hcl")
	if err := gossipKey([]string{a, b}, io.Discard); err != nil {
		t.Fatal(err)
	}
	first := readKey(t, a)
	if readKey(t, b) != first {
		t.Fatal("the agents got different keys")
	}
	if raw, err := base64.StdEncoding.DecodeString(first); err != nil || len(raw) != 32 {
		t.Fatalf("key %q is not 32 bytes of base64", first)
	}
	if st, _ := os.Stat(a); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	// A new agent joins a stack whose key exists: it gets that key, not a new one.
	c := filepath.Join(dir, "new", "gossip.hcl")
	if err := gossipKey([]string{a, c}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if readKey(t, c) != first || readKey(t, a) != first {
		t.Fatal("the existing key was replaced")
	}
	if err := gossipKey(nil, io.Discard); err == nil {
		t.Fatal("no files accepted")
	}
}

func readKey(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	m := gossipKeyLine.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s holds no key: %q", f, b)
	}
	return string(m[1])
}
