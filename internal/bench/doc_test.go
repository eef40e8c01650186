package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	mesh, ev := MeshSection, EventsSection
	both := "# B\n\nintro\n\n" + mesh.Begin + "\nOLD MESH\n" + mesh.End + "\n\n## Notes\nkept\n\n" +
		ev.Begin + "\nOLD EVENTS\n" + ev.End + "\n\ntail\n"
	tests := []struct {
		name     string
		s        Section
		existing string
		want     string
		wantErr  string
	}{
		{"new file", mesh, "", docIntro + "\n## Latest run\n\n" + mesh.Begin + "\nNEW\n" + mesh.End + "\n", ""},
		{"keeps notes around the block", mesh, "# B\n\nintro\n\n" + mesh.Begin + "\nOLD\nrows\n" + mesh.End + "\n\n## Notes\nkept\n",
			"# B\n\nintro\n\n" + mesh.Begin + "\nNEW\n" + mesh.End + "\n\n## Notes\nkept\n", ""},
		{"the mesh section leaves the events section alone", mesh, both,
			strings.Replace(both, "OLD MESH", "NEW", 1), ""},
		{"the events section leaves the mesh section alone", ev, both,
			strings.Replace(both, "OLD EVENTS", "NEW", 1), ""},
		{"a file without the section gets it appended", ev, "# B\n\n" + mesh.Begin + "\nM\n" + mesh.End + "\n\n\n",
			"# B\n\n" + mesh.Begin + "\nM\n" + mesh.End + "\n\n" + ev.Heading + "\n\n" + ev.Begin + "\nNEW\n" + ev.End + "\n", ""},
		{"markers in the wrong order are refused", mesh, "notes\n" + mesh.End + "\n" + mesh.Begin + "\n", "", "not a pair"},
		{"a lone begin marker is refused", ev, "notes\n" + ev.Begin + "\nrows\n", "", "not a pair"},
		{"a lone end marker is refused", ev, "notes\n" + ev.End + "\n", "", "not a pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.Splice(tt.existing, "NEW\n\n")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Splice = %q, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Splice =\n%q, %v\nwant\n%q", got, err, tt.want)
			}
		})
	}
}

// Both commands write one file through WriteSection: each run replaces its own section only.
func TestWriteSectionKeepsTheOtherSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	steps := []struct {
		s    Section
		text string
	}{{MeshSection, "mesh 1"}, {EventsSection, "events 1"}, {MeshSection, "mesh 2"}, {EventsSection, "events 2"}}
	for _, st := range steps {
		if err := WriteSection(path, st.s, st.text); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := docIntro + "\n" + MeshSection.Heading + "\n\n" + MeshSection.Begin + "\nmesh 2\n" + MeshSection.End + "\n\n" +
		EventsSection.Heading + "\n\n" + EventsSection.Begin + "\nevents 2\n" + EventsSection.End + "\n"
	if string(b) != want {
		t.Errorf("file =\n%q\nwant\n%q", b, want)
	}
}
