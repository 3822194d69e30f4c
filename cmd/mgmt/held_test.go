package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
)

// A file whose parent directory's path is taken by a regular file fails;
// what depends on it is held, and the report says so and by what: a file
// grouped with another of its directory (the group writes the other), and
// a command after that file.
func TestReportHeldByFailedFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "blocker"), []byte("a regular file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := writeGraph(t, dir, heldGraph(t, dir))
	code, out, report := runOnce(t, dir, g)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (file[inner] failed):\n%s", code, out)
	}
	var rep struct {
		Changed, Failed int
		Held            *int `json:"held"`
		Res             []struct {
			Res     string   `json:"res"`
			Group   string   `json:"group"`
			Changed bool     `json:"changed"`
			Failed  bool     `json:"failed"`
			Held    bool     `json:"held"`
			HeldBy  []string `json:"held_by"`
		} `json:"resources"`
	}
	data := readReport(t, report, &rep)
	if rep.Held == nil || *rep.Held != 2 || rep.Failed != 1 || rep.Changed != 1 {
		t.Errorf("report counts changed %d, failed %d, held %v; want 1, 1, 2:\n%s", rep.Changed, rep.Failed, rep.Held, data)
	}
	type want struct {
		group, changed, failed bool
		heldBy                 []string
	}
	wants := map[string]want{
		"file[inner]":   {failed: true},
		"file[a]":       {group: true, heldBy: []string{"file[inner]"}},
		"file[b]":       {group: true, changed: true},
		"exec[after-a]": {heldBy: []string{"file[inner]"}},
	}
	if len(rep.Res) != len(wants) {
		t.Fatalf("%d resources in the report, want %d:\n%s", len(rep.Res), len(wants), data)
	}
	for _, r := range rep.Res {
		w, ok := wants[r.Res]
		if !ok || (r.Group != "") != w.group || r.Changed != w.changed || r.Failed != w.failed ||
			r.Held != (w.heldBy != nil) || !slices.Equal(r.HeldBy, w.heldBy) {
			t.Errorf("%s: group %q changed %v failed %v held %v by %v; want %+v", r.Res, r.Group, r.Changed, r.Failed, r.Held, r.HeldBy, w)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "sub/b")); err != nil || string(b) != "b\n" {
		t.Errorf("file[b], grouped with the held file[a], not written: %q, %v", b, err)
	}
	for _, p := range []string{"sub/a", "after-a-ran"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s exists: a resource held back ran", p)
		}
	}
	if testing.Verbose() {
		t.Logf("report:\n%s", data)
	}
}

// mgmt status says, below the table, how many resources a host holds back.
func TestStatusPrintsHeld(t *testing.T) {
	var b strings.Builder
	all := []deploy.HostStatus{
		{Host: "web1", State: deploy.StateFailed, Failed: []deploy.FailedRes{{Res: "file[inner]", Err: "not a directory"}}, Held: 2},
		{Host: "web2", State: deploy.StateConverged},
	}
	if err := printHosts(&b, all, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "web1: 2 resource(s) held back: they wait on a failed one\n") || strings.Contains(out, "web2: 0") {
		t.Fatalf("status output:\n%s", out)
	}
}

// heldGraph is the agent package's testdata/held-by-failed-file.yaml (its
// hoststatus_test.go runs the same graph), for files in dir.
func heldGraph(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("../../agent/testdata/held-by-failed-file.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "$DIR", dir)
}
