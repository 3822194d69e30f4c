package all

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

const module = "github.com/mgmtconfig/mgmt/"

// registeredKinds returns the kinds the non-test Go files in dir register
// with engine.Register("kind", ...).
func registeredKinds(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Register" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "engine" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: engine.Register with a kind that is not a string literal", fset.Position(call.Pos()))
				return true
			}
			kind, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, kind)
			return true
		})
	}
	return kinds
}

// Every package under resources/ that registers a kind is imported here,
// and every kind it registers is known to the engine once this package is
// linked in.
func TestEveryKindRegistered(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "all.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	imported := map[string]bool{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		imported[p] = true
	}

	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	known := engine.Kinds()
	var want []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		kinds := registeredKinds(t, filepath.Join("..", d.Name()))
		if len(kinds) == 0 {
			continue
		}
		pkg := path.Join(module+"resources", d.Name())
		if !imported[pkg] {
			t.Errorf("resources/%s registers %q but all.go does not import %s", d.Name(), kinds, pkg)
			continue
		}
		for _, k := range kinds {
			want = append(want, k)
			if !slices.Contains(known, k) {
				t.Errorf("kind %q of resources/%s is not registered: engine.Kinds() = %q", k, d.Name(), known)
			}
		}
	}
	for _, k := range []string{"exec", "file", "noop", "timer"} {
		if !slices.Contains(want, k) {
			t.Errorf("kind %q was not found registered by any package under resources/", k)
		}
	}
	for _, k := range known {
		res, ok := engine.NewRes(k)
		if !ok || res == nil {
			t.Errorf("engine.NewRes(%q) = %v, %v", k, res, ok)
		}
	}
}

// The examples of the kinds in this package's care parse and validate
// with every kind registered.
func TestExamples(t *testing.T) {
	tests := []struct {
		file  string
		kinds map[string]int
		edges int
	}{
		{"exec1.yaml", map[string]int{"exec": 4}, 2},
		{"graph8.yaml", map[string]int{"exec": 4}, 2},
		{"timer1.yaml", map[string]int{"timer": 1, "exec": 1}, 1},
		{"noop1.yaml", map[string]int{"noop": 1, "exec": 4}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			g, err := yamlgraph.ParseFile(filepath.Join("..", "..", "examples", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, v := range g.Vertices {
				got[v.Kind]++
			}
			for k, n := range tt.kinds {
				if got[k] != n {
					t.Errorf("%d %s resources, want %d (all: %v)", got[k], k, n, got)
				}
			}
			if len(got) != len(tt.kinds) {
				t.Errorf("kinds %v, want %v", got, tt.kinds)
			}
			if len(g.Edges) != tt.edges {
				t.Errorf("%d edges, want %d", len(g.Edges), tt.edges)
			}
		})
	}
}
