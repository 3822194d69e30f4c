package main

import (
	"encoding/json"
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
	g := filepath.Join(dir, "g.yaml")
	if err := os.WriteFile(g, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	code, out := capture(t, "run", "--file", g, "--noop", "--detailed-exitcodes", "--converged-timeout=0", "--no-watch",
		"--prefix", filepath.Join(dir, "prefix"), "--hostname", "h", "--report", report)
	if code != exitChanges {
		t.Fatalf("exit %d, want %d:\n%s", code, exitChanges, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Pending int `json:"pending"`
		Res     []struct {
			Res     string `json:"res"`
			Group   string `json:"group"`
			Pending bool   `json:"pending"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
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
