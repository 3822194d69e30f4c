package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// In noop, a directory of more files than a report keeps changes of
// (engine.MaxChangesKept, 200), grouped: every file that would be
// written is pending in the report, and the run's count says so.
func TestNoopManyGroupedFilesPending(t *testing.T) {
	const files = 250
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("resources:\n  file:\n")
	for i := range files {
		fmt.Fprintf(&b, "  - name: f%d\n    path: %s/sub/f%d\n    content: \"x\\n\"\n", i, dir, i)
	}
	g := writeGraph(t, dir, b.String())
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, report := runOnce(t, dir, g, "--noop", "--detailed-exitcodes")
	if code != exitChanges {
		t.Fatalf("exit %d, want %d:\n%s", code, exitChanges, out)
	}
	var rep struct {
		Pending int `json:"pending"`
		Res     []struct {
			Res     string `json:"res"`
			Group   string `json:"group"`
			Pending bool   `json:"pending"`
		} `json:"resources"`
	}
	readReport(t, report, &rep)
	var pending, grouped int
	for _, r := range rep.Res {
		if r.Pending {
			pending++
		}
		if r.Group != "" {
			grouped++
		}
	}
	if rep.Pending != files || pending != files || grouped != files {
		t.Errorf("report: pending %d, %d resources pending, %d grouped; want %d each", rep.Pending, pending, grouped, files)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "sub")); len(ents) != 0 {
		t.Errorf("noop wrote %d files", len(ents))
	}
}
