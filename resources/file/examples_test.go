package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// TestExamples parses the file examples, moves them from /tmp into a
// temporary directory, and applies them until nothing changes: they must
// converge, and stay converged.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/file*.yaml")
	must(t, err)
	if len(files) == 0 {
		t.Fatal("no examples/file*.yaml")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			g, err := yamlgraph.ParseFile(name)
			must(t, err)
			root := t.TempDir()
			var res []*File
			for _, v := range g.Vertices {
				r, ok := v.Res.(*File)
				if !ok {
					t.Fatalf("%s[%s] is not a file", v.Kind, v.Name)
				}
				if !strings.HasPrefix(r.Path, "/tmp/") {
					t.Fatalf("%s: path %s is not under /tmp", v.Name, r.Path)
				}
				if os.Getuid() != 0 && (r.Owner != "" || r.GroupName != "") {
					skip.OrFail(t, "owners need root (running as uid %d)", os.Getuid())
				}
				r.Path = root + strings.TrimPrefix(r.Path, "/tmp")
				if strings.HasPrefix(r.Source, "/tmp/") {
					r.Source = root + strings.TrimPrefix(r.Source, "/tmp")
				}
				must(t, r.Validate())
				must(t, r.Init(restest.Env(t, "file")))
				res = append(res, r)
			}
			// Declaration order is not dependency order: apply rounds
			// until one changes nothing, as the engine's events would.
			for round := 0; ; round++ {
				if round == 4 {
					t.Fatal("not converged after 4 rounds")
				}
				changed := false
				for _, r := range res {
					c, err := r.CheckApply(context.Background(), true)
					must(t, err)
					changed = changed || c
				}
				if !changed {
					break
				}
			}
		})
	}
}
