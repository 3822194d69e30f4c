package yamlgraph

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	_ "github.com/mgmtconfig/mgmt/resources/exec"
	_ "github.com/mgmtconfig/mgmt/resources/file"
	_ "github.com/mgmtconfig/mgmt/resources/noop"
	_ "github.com/mgmtconfig/mgmt/resources/timer"
)

var update = flag.Bool("update", false, "rewrite the golden .err files")

// lineCol is what follows the file name at the start of every message.
var lineCol = regexp.MustCompile(`^:[1-9][0-9]*:[1-9][0-9]*: `)

// Every file in testdata/bad is refused with the message in its .err file,
// which names the file, line and column and, where there is one, the
// resource.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 45 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g, err := ParseFile(f)
			if g != nil && err != nil {
				t.Fatal("an invalid file returned a graph")
			}
			if err == nil { // valid as a file: the graph itself must be refused
				_, err = engine.Compile(context.Background(), &g.Decl, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}
			if err == nil {
				t.Fatalf("accepted: %d vertices", len(g.Vertices))
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("no golden file (run go test -update): %v", rerr)
			}
			if got != string(want) {
				t.Fatalf("error\n got: %s\nwant: %s", got, want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
				if !strings.HasPrefix(line, f+":") || !lineCol.MatchString(strings.TrimPrefix(line, f)) {
					t.Fatalf("a message does not begin with file:line:column: %s", line)
				}
			}
		})
	}
}

func TestLegacyFile(t *testing.T) {
	g, err := ParseFile("testdata/good/legacy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "legacy" || len(g.Vertices) != 2 || len(g.Edges) != 1 {
		t.Fatalf("parsed %q with %d vertices and %d edges", g.Name, len(g.Vertices), len(g.Edges))
	}
	var e1 = g.Vertices[1]
	if e1.Kind != "exec" || e1.Name != "e1" || !e1.Exported {
		t.Fatalf("exported exec parsed as %s exported=%t", e1, e1.Exported)
	}
	if n1 := g.Vertices[0]; n1.Meta.AutoGroup || !n1.Meta.AutoEdge {
		t.Fatalf("meta not decoded: %+v", n1.Meta)
	}
	e := g.Edges[0]
	if e.From.Kind != "noop" || e.To.Name != "e1" || !e.Notify {
		t.Fatalf("edge parsed as %+v", e)
	}
}

func TestParamsRoundTrip(t *testing.T) {
	g, err := Parse("x.yaml", []byte("resources: {exec: [{name: a, cmd: echo one, timeout: 5}]}"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Params(g.Vertices[0].Res)
	if err != nil {
		t.Fatal(err)
	}
	res, err := DecodeRes("etcd:host1", "exec", "a", p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Params(res)
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != string(p2) {
		t.Fatalf("parameters changed in transit:\n%s\nvs\n%s", p, p2)
	}
	if _, err := DecodeRes("etcd:host1", "exec", "a", []byte("cmd: x\nbogus: 1\n")); err == nil || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Fatalf("strict decoding of collected parameters: %v", err)
	}
}
