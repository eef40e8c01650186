package testkit

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot is the repository's folder: the nearest folder above the working directory (go test runs in the
// package's folder) that holds scripts/stack.sh, the script every test stack and tool lookup runs from.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "stack.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testkit: no scripts/stack.sh above the working directory")
		}
		dir = parent
	}
}
