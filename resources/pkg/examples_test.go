package pkg

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// The pkg examples parse and validate, and compile to the graphs their
// comments describe (automatic edges, which need PackageKit, left out
// here; TestAutoEdges covers them).
func TestExamples(t *testing.T) {
	for _, tt := range []struct {
		file, want string
	}{
		{"pkg1-grouped.yaml", `Vertices(2):
  pkg[autogroup:(htop,jq,tree)]
  pkg[telnet]
Edges(0):
`},
		{"pkg2-service.yaml", `Vertices(3):
  file[chrony-conf]
  pkg[chrony]
  svc[chrony]
Edges(1):
  file[chrony-conf] -> svc[chrony] (notify)
`},
	} {
		t.Run(tt.file, func(t *testing.T) {
			d, err := yamlgraph.ParseFile(filepath.Join("..", "..", "examples", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range d.Vertices {
				if v.Kind == "pkg" {
					v.Meta.AutoEdge = false
				}
			}
			g, err := engine.Compile(context.Background(), &d.Decl, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got := g.String(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	matches, _ := filepath.Glob(filepath.Join("..", "..", "examples", "pkg*.yaml"))
	if len(matches) != 2 {
		t.Errorf("examples/pkg*.yaml: %v, want the two tested here", matches)
	}
}
