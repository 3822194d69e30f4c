package line

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/file"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// put replaces the file at once (a new file renamed over it), as an editor
// does: the watcher sees one change, never a half-written file.
func put(t testing.TB, p, content string) {
	t.Helper()
	tmp := p + ".new"
	must(t, os.WriteFile(tmp, []byte(content), 0o600))
	must(t, os.Rename(tmp, p))
}

func read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if os.IsNotExist(err) {
		return "(missing)"
	}
	return string(b)
}

// TestEdit: what CheckApply makes of a file's content, and that a second
// pass finds nothing to do.
func TestEdit(t *testing.T) {
	for _, c := range []struct {
		name          string
		res           Line
		before, after string
	}{
		{"appended", Line{Line: "b=2"}, "a=1\n", "a=1\nb=2\n"},
		{"appended after a last line without newline", Line{Line: "b=2"}, "a=1", "a=1\nb=2\n"},
		{"there already", Line{Line: "a=1"}, "x\na=1\ny\n", ""},
		{"replaced in place", Line{Line: "PermitRootLogin no", Match: "^#?PermitRootLogin"}, "x\n#PermitRootLogin yes\ny\n", "x\nPermitRootLogin no\ny\n"},
		{"only the first match replaced", Line{Line: "k=new", Match: "^k="}, "k=1\nk=2\n", "k=new\nk=2\n"},
		{"no match: appended", Line{Line: "k=new", Match: "^k="}, "x\n", "x\nk=new\n"},
		{"absent: every equal line removed", Line{Line: "a=1", State: "absent"}, "a=1\nb\na=1\n", "b\n"},
		{"absent: not there", Line{Line: "a=1", State: "absent"}, "b\n", ""},
		{"absent by match", Line{Match: "^debug", State: "absent"}, "debug=1\nx\ndebugging\n", "x\n"},
		{"empty file", Line{Line: "a"}, "", "a\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			must(t, os.WriteFile(p, []byte(c.before), 0o640))
			r := c.res
			r.Path = p
			must(t, r.Validate())
			changed, err := r.CheckApply(t.Context(), true)
			must(t, err)
			want := c.after
			if want == "" {
				want = c.before
			}
			if changed != (c.after != "") || read(t, p) != want {
				t.Fatalf("changed %v, file %q; want %v, %q", changed, read(t, p), c.after != "", want)
			}
			if changed, err = r.CheckApply(t.Context(), true); err != nil || changed {
				t.Fatalf("second CheckApply: %v, %v: want nothing to do", changed, err)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the file's 0640 kept", fi.Mode())
			}
			if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
				t.Errorf("%d entries beside the file: a temporary file was left", len(ents))
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	gone := &Line{Path: p, Line: "x", State: "absent"}
	must(t, gone.Validate())
	if changed, err := gone.CheckApply(t.Context(), true); err != nil || changed || read(t, p) != "(missing)" {
		t.Fatalf("absent line of a missing file: %v, %v, %q", changed, err, read(t, p))
	}
	r := &Line{Path: p, Line: "x"}
	must(t, r.Validate())
	if changed, err := r.CheckApply(t.Context(), true); err != nil || !changed || read(t, p) != "x\n" {
		t.Fatalf("present line of a missing file: %v, %v, %q", changed, err, read(t, p))
	}
}

type recorder []engine.Change

func (r *recorder) Record(c engine.Change) { *r = append(*r, c) }

// TestReportsChange: a noop run reports the line it would replace, as
// engine.Change, and leaves the file alone.
func TestReportsChange(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte("#Port 22\n"), 0o644))
	r := &Line{Path: p, Line: "Port 2222", Match: "^#?Port "}
	must(t, r.Validate())
	var rec recorder
	changed, err := r.CheckApply(engine.WithRecorder(t.Context(), &rec), false)
	must(t, err)
	want := engine.Change{Property: "line", From: "#Port 22", To: "Port 2222", Why: "line 1 matches ^#?Port "}
	if !changed || len(rec) != 1 || rec[0] != want || read(t, p) != "#Port 22\n" {
		t.Fatalf("changed %v, reported %+v, file %q; want %+v and the file unchanged", changed, rec, read(t, p), want)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		res  Line
		want string
	}{
		{Line{Line: "x"}, "path: missing"},
		{Line{Path: "etc/x", Line: "x"}, "is relative"},
		{Line{Path: "/etc/", Line: "x"}, "is a directory"},
		{Line{Path: "/etc/x"}, "line: missing"},
		{Line{Path: "/etc/x", State: "absent"}, "give one"},
		{Line{Path: "/etc/x", Line: "a\nb"}, "contains a newline"},
		{Line{Path: "/etc/x", Line: "a", State: "gone"}, "want present (the default) or absent"},
		{Line{Path: "/etc/x", Line: "a", Match: "("}, "want a regular expression"},
	} {
		err := c.res.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.res, err, c.want)
		}
	}
}

// TestConformance: the shared suite on a temporary file: the line replaces
// its commented-out form, and an editor's rewrite of it, then its
// commenting out, are each seen through inotify and repaired in place.
func TestConformance(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sshd_config")
	must(t, os.WriteFile(p, []byte("# comment\n#PermitRootLogin yes\nPort 22\n"), 0o600))
	restest.Run(t, restest.Case{
		Kind: "line",
		Res: func(t *testing.T) engine.Res {
			return &Line{Path: p, Line: "PermitRootLogin no", Match: `^#?\s*PermitRootLogin`}
		},
		State: func(t *testing.T) string { return read(t, p) },
		Drifts: []restest.Drift{
			{Name: "edited back", Do: func(t *testing.T) {
				put(t, p, "# comment\nPermitRootLogin yes\nPort 22\n")
			}},
			{Name: "commented out", Do: func(t *testing.T) { put(t, p, "# comment\n# PermitRootLogin no\nPort 22\n") }},
		},
	})
}

// TestGraph: a line after the file resource that creates its file gets an
// automatic edge; a file resource managing the content of the same file
// and a line on it are refused, naming both and where they are declared.
func TestGraph(t *testing.T) {
	yg, err := yamlgraph.ParseFile("testdata/line-after-file.yaml")
	must(t, err)
	g, err := engine.Compile(context.Background(), &yg.Decl, slog.New(slog.DiscardHandler))
	must(t, err)
	if !strings.Contains(g.String(), "file[conf] -> line[port]") || !strings.Contains(g.String(), "file[conf] -> line[root]") {
		t.Errorf("no automatic edges from the file to its lines:\n%s", g)
	}

	const name = "testdata/two-owners.yaml"
	yg, err = yamlgraph.ParseFile(name)
	must(t, err)
	_, err = engine.Compile(context.Background(), &yg.Decl, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a file with content and a line of it were compiled into one graph")
	}
	for _, want := range []string{name + ":", "line[port]", "file[conf]", "both manage content /srv/app.conf"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	t.Logf("the error: %v", err)
}

// TestExample runs examples/line1.yaml, moved into a temporary directory,
// until nothing changes.
func TestExample(t *testing.T) {
	yg, err := yamlgraph.ParseFile("../../examples/line1.yaml")
	must(t, err)
	root := t.TempDir()
	var res []engine.Res
	for _, v := range yg.Vertices {
		switch r := v.Res.(type) {
		case *Line:
			r.Path = root + strings.TrimPrefix(r.Path, "/tmp")
		case *file.File:
			r.Path = root + strings.TrimPrefix(r.Path, "/tmp")
		default:
			t.Fatalf("%s[%s]: unexpected kind", v.Kind, v.Name)
		}
		must(t, v.Res.Validate())
		res = append(res, v.Res)
	}
	for round := 0; ; round++ {
		if round == 3 {
			t.Fatal("not converged after 3 rounds")
		}
		changed := false
		for _, r := range res {
			c, err := r.CheckApply(t.Context(), true)
			must(t, err)
			changed = changed || c
		}
		if !changed {
			break
		}
	}
	if got := read(t, root+"/mgmt-line1/app.conf"); got != "port = 8080\nworkers = 4\n" {
		t.Errorf("app.conf: %q", got)
	}
}

// BenchmarkRepairLatency: a line removed from its file by an outside
// write, until the watching loop has put it back.
func BenchmarkRepairLatency(b *testing.B) {
	p := filepath.Join(b.TempDir(), "f")
	must(b, os.WriteFile(p, []byte("a\n"), 0o644))
	r := &Line{Path: p, Line: "b"}
	must(b, r.Validate())
	repaired := make(chan time.Time, 16)
	restest.Loop(b, r, func(changed bool, err error) {
		if err != nil {
			b.Error(err)
		}
		if changed {
			repaired <- time.Now()
		}
	})
	<-repaired // the first apply
	var lat []time.Duration
	for b.Loop() {
		put(b, p, "a\n")
		at := time.Now()
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
}
