package bench

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Section is one generated part of docs/benchmarks.md, between its own markers; text outside a section's
// markers (the notes a person wrote, profiling findings, the other sections) survives every run.
type Section struct {
	Begin, End string
	// Heading goes above the markers when a file has no such section yet.
	Heading string
}

// Sections of docs/benchmarks.md: `make bench` and `make bench-events` each rewrite only their own.
var (
	MeshSection = Section{Begin: "<!-- make bench: generated from here -->",
		End: "<!-- make bench: generated up to here -->", Heading: "## Latest run"}
	EventsSection = Section{Begin: "<!-- bench-events:start -->", End: "<!-- bench-events:end -->",
		Heading: "## Event latency on JetStream, latest run"}
)

const docIntro = "# Benchmarks\n\n`make bench` and `make bench-events` write their results between their markers " +
	"below; the rest of this file is kept.\n"

// Splice puts generated between s's markers in existing. A document without the section gets it appended
// (a new document when existing is empty); one with a single marker, or both in the wrong order, is an error:
// guessing where the section ends could eat text a person wrote.
func (s Section) Splice(existing, generated string) (string, error) {
	block := s.Begin + "\n" + strings.TrimRight(generated, "\n") + "\n" + s.End
	i, j := strings.Index(existing, s.Begin), strings.Index(existing, s.End)
	switch {
	case i >= 0 && j > i:
		return existing[:i] + block + existing[j+len(s.End):], nil
	case i >= 0 || j >= 0:
		return "", fmt.Errorf("%s and %s are not a pair in this order; fix the file by hand", s.Begin, s.End)
	case strings.TrimSpace(existing) == "":
		return docIntro + "\n" + s.Heading + "\n\n" + block + "\n", nil
	}
	return strings.TrimRight(existing, "\n") + "\n\n" + s.Heading + "\n\n" + block + "\n", nil
}

// WriteSection rewrites s's part of the file at path with generated, keeping everything else.
func WriteSection(path string, s Section, generated string) error {
	existing, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc, err := s.Splice(string(existing), generated)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
