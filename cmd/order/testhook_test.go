package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHoldCommitHook(t *testing.T) {
	tests := []struct {
		name     string
		set      bool          // ORDER_TEST_HOLD_COMMIT_FILE is set
		exists   bool          // the file exists when the hook runs
		removeAt time.Duration // the file is removed after this (0: never)
		ctxEnds  time.Duration // the transaction's context ends after this (0: never)
		wantHeld time.Duration // the hook returns no sooner than this
	}{
		{name: "not set: no option, nothing logged"},
		{name: "set, no file: no wait", set: true},
		{name: "file removed: released", set: true, exists: true, removeAt: 300 * time.Millisecond, wantHeld: 300 * time.Millisecond},
		{name: "context ends: released", set: true, exists: true, ctxEnds: 300 * time.Millisecond, wantHeld: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "hold")
			if tt.exists {
				if err := os.WriteFile(file, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			h := testHooks{}
			if tt.set {
				h.HoldCommitFile = file
			}
			opts := h.storeOptions(slog.New(slog.NewTextHandler(&logs, nil)))
			if warned := bytes.Contains(logs.Bytes(), []byte("TEST ONLY")); len(opts) != map[bool]int{true: 1}[tt.set] || warned != tt.set {
				t.Fatalf("%d options, TEST ONLY logged %t; want %d and %t (the e2e suite looks for it)", len(opts), warned,
					map[bool]int{true: 1}[tt.set], tt.set)
			}
			if !tt.set {
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now() // before the timers, so they fire no sooner than their delay after it
			if tt.ctxEnds > 0 {
				time.AfterFunc(tt.ctxEnds, cancel)
			}
			if tt.removeAt > 0 {
				time.AfterFunc(tt.removeAt, func() { os.Remove(file) })
			}
			done := make(chan struct{})
			go func() { holdWhileExists(file, 10*time.Millisecond)(ctx); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the hook still holds")
			}
			if held := time.Since(start); held < tt.wantHeld || (tt.wantHeld == 0 && held > time.Second) {
				t.Errorf("held %s; want %s", held, tt.wantHeld)
			}
		})
	}
}
