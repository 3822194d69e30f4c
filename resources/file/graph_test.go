package file

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// TestOnePathTwoOwners: a directory x/ and a file x are one path; a graph
// with both is refused when compiled, naming both resources and where each
// is declared. Before the fix their UIDs differed (x/ and x), both passed,
// and at run time each replaced the other.
func TestOnePathTwoOwners(t *testing.T) {
	for _, pair := range [][2]string{
		{"/srv/x/", "/srv/x"},
		{"/srv/x//", "/srv/./x"},
		{"/srv/a/../x", "/srv/x/."},
	} {
		a, b := (&File{Path: pair[0]}).UIDs(), (&File{Path: pair[1]}).UIDs()
		if len(a) != 1 || len(b) != 1 || a[0] != b[0] {
			t.Errorf("UIDs of %q and %q: %v and %v, want one UID", pair[0], pair[1], a, b)
		}
	}

	const name = "testdata/one-path-two-owners.yaml"
	yg, err := yamlgraph.ParseFile(name)
	must(t, err)
	_, err = engine.Compile(context.Background(), &yg.Decl, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a directory and a file at one path were compiled into one graph")
	}
	msg := err.Error()
	for _, want := range []string{name + ":", "file[conf-dir]", "file[conf-file]", "both manage file /srv/app/conf", "only one resource may"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	t.Logf("the error: %s", msg)
}

// TestIgnoredOnDirectory: content, and a source without recurse, on a
// directory were accepted by the original mgmt and ignored; they are
// accepted again, each with one warning, logged when the resource starts,
// and the graph converges.
func TestIgnoredOnDirectory(t *testing.T) {
	yg, err := yamlgraph.ParseFile("testdata/ignored-on-directory.yaml")
	must(t, err)
	root := t.TempDir()
	want := map[string]string{
		"state-dir": "content: ignored: a directory (path ending in /) has no content",
		"spool-dir": "source: ignored: a directory is filled from its source only with recurse: true",
		"notes":     "",
	}
	var res []*File
	for _, v := range yg.Vertices {
		r := v.Res.(*File)
		warnings := r.Warnings()
		switch w, ok := want[v.Name]; {
		case !ok:
			t.Fatalf("unexpected resource %s", v.Name)
		case w == "" && len(warnings) != 0:
			t.Errorf("%s: warnings %q, want none", v.Name, warnings)
		case w != "" && (len(warnings) != 1 || !strings.HasPrefix(warnings[0], w)):
			t.Errorf("%s: warnings %q, want one starting %q", v.Name, warnings, w)
		}

		var logs bytes.Buffer
		r.Path = root + strings.TrimPrefix(r.Path, "/tmp")
		must(t, r.Validate())
		must(t, r.Init(engine.Env{Kind: "file", Name: v.Name, Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
		if n := strings.Count(logs.String(), "level=WARN"); (want[v.Name] != "") != (n == 1) || n > 1 {
			t.Errorf("%s: Init logged %d warnings:\n%s", v.Name, n, logs.String())
		}
		res = append(res, r)
	}
	for round := 0; ; round++ {
		if round == 3 {
			t.Fatal("not converged after 3 rounds")
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
	for _, d := range []string{"compat/state.d", "compat/spool"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "compat/spool")); len(entries) != 0 {
		t.Errorf("the ignored source put %d entries into spool", len(entries))
	}
	if data, _ := os.ReadFile(filepath.Join(root, "compat/state.d/notes")); string(data) != "kept\n" {
		t.Errorf("notes: %q", data)
	}
}
