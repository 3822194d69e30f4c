package yamlgraph

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/facts"
)

// FuzzParse: no input makes Parse or Compile panic or hang; a refusal is
// Errors, each with a line and column; an accepted graph parses the same
// way twice, and its resources survive the trip to another host
// (Params, then DecodeRes) unchanged. The seeds are the bad and good
// corpora, templated graphs (testdata/render), the examples and
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/bad/*.yaml", "testdata/good/*.yaml", "testdata/render/*.yaml", "../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Parse("f.yaml", data)
		if err != nil {
			var es Errors
			if g != nil || !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("refused with %T (graph %v): %v", err, g != nil, err)
			}
			for _, e := range es {
				if e.File != "f.yaml" || e.Line < 1 || e.Column < 1 {
					t.Fatalf("a message without file:line:column: %q", e.Error())
				}
			}
			return
		}
		again, err := Parse("f.yaml", data)
		if err != nil || len(again.Vertices) != len(g.Vertices) {
			t.Fatalf("accepted once, then: %v", err)
		}
		for _, v := range g.Vertices {
			p, err := Params(v.Res)
			if err != nil {
				t.Fatalf("%s: Params: %v", v, err)
			}
			res, err := DecodeRes("etcd:h", v.Kind, v.Name, p)
			if err != nil {
				t.Fatalf("%s: its own parameters refused by DecodeRes: %v\n%s", v, err, p)
			}
			p2, err := Params(res)
			if err != nil || !bytes.Equal(p, p2) {
				t.Fatalf("%s: parameters changed in transit (%v):\n%s\nvs\n%s", v, err, p, p2)
			}
		}
		// Rendered for a host, it renders the same twice, or is refused
		// with positions as above.
		h := &facts.Data{Hostname: "web-1", Labels: map[string]string{"role": "web"}, Facts: probeData(nil).Facts}
		if hg, err := ParseWith("f.yaml", data, Options{Host: h}); err == nil {
			hg2, err := ParseWith("f.yaml", data, Options{Host: h})
			if err != nil || len(hg2.Vertices) != len(hg.Vertices) {
				t.Fatalf("rendered once, then: %v", err)
			}
		} else if es := (Errors)(nil); !errors.As(err, &es) || es[0].Line < 1 || es[0].Column < 1 {
			t.Fatalf("refused for a host without file:line:column: %v", err)
		}
		// Compile may refuse the graph (two files with one path); it must
		// not panic.
		engine.Compile(context.Background(), &g.Decl, log)
	})
}
