package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// In noop, a directory's group of files of which one cannot be checked (a
// directory is in its way): the report says the others would be written,
// and --detailed-exitcodes says the run failed.
func TestNoopGroupMemberFailureReportsOthers(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub/b/in-the-way"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := writeGraph(t, dir, fmt.Sprintf(`resources:
  file:
  - {name: a, path: %[1]s/sub/a, content: "a\n", meta: {retry: 0}}
  - {name: b, path: %[1]s/sub/b, content: "b\n", meta: {retry: 0}}
  - {name: c, path: %[1]s/sub/c, content: "c\n", meta: {retry: 0}}
`, dir))
	code, out, report := runOnce(t, dir, g, "--noop", "--detailed-exitcodes")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d (file[b] failed):\n%s", code, exitFailed, out)
	}
	var rep struct {
		Pending, Failed int
		Res             []struct {
			Res     string `json:"res"`
			Group   string `json:"group"`
			Pending bool   `json:"pending"`
			Failed  bool   `json:"failed"`
		} `json:"resources"`
	}
	data := readReport(t, report, &rep)
	if rep.Pending != 2 || rep.Failed != 1 || len(rep.Res) != 3 {
		t.Errorf("report counts pending %d, failed %d, %d resources; want 2, 1, 3:\n%s", rep.Pending, rep.Failed, len(rep.Res), data)
	}
	for _, r := range rep.Res {
		if bad := r.Res == "file[b]"; r.Group == "" || r.Failed != bad || r.Pending == bad {
			t.Errorf("%s: group %q pending %v failed %v; want grouped, and failed if file[b], else pending", r.Res, r.Group, r.Pending, r.Failed)
		}
	}
	for _, p := range []string{"sub/a", "sub/c"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("noop wrote %s", p)
		}
	}
}
