package yamlgraph

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mgmtconfig/mgmt/resources/file"
)

// A relative source is resolved against the graph file's directory, not
// the process's working directory, and listed in Local; an absolute source
// is the target host's and is not.
func TestRelativeSource(t *testing.T) {
	dir := t.TempDir()
	graph := filepath.Join(dir, "site", "graph.yaml")
	if err := os.MkdirAll(filepath.Dir(graph), 0o755); err != nil {
		t.Fatal(err)
	}
	text := "resources:\n  file:\n  - name: motd\n    path: /etc/motd\n    source: files/motd\n" +
		"  - name: abs\n    path: /etc/abs\n    source: /srv/abs\n"
	if err := os.WriteFile(graph, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // somewhere else: the result must not depend on it
	g, err := ParseFile(graph)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "site", "files", "motd")
	if got := g.Vertices[0].Res.(*file.File).Source; got != want {
		t.Errorf("source = %q, want %q", got, want)
	}
	if got := g.Vertices[1].Res.(*file.File).Source; got != "/srv/abs" {
		t.Errorf("absolute source = %q, want it kept", got)
	}
	wantLocal := []LocalPath{{Path: want, Pos: graph + ":3:5", Res: "file[motd]"}}
	if !reflect.DeepEqual(g.Local, wantLocal) {
		t.Errorf("Local = %+v, want %+v", g.Local, wantLocal)
	}
}
