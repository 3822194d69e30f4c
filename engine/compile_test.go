package engine

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pathRes is a fake kind that owns a path and wants its nearest managed
// ancestor directory before it, as the file kind does.
type pathRes struct {
	fake
	path string
}

func (p *pathRes) UIDs() []UID { return []UID{{"file", p.path}} }
func (p *pathRes) AutoEdges(context.Context) ([]AutoEdge, error) {
	var uids []UID
	dir := strings.TrimSuffix(p.path, "/")
	for i := strings.LastIndex(dir, "/"); i > 0; i = strings.LastIndex(dir, "/") {
		dir = dir[:i]
		uids = append(uids, UID{"file", dir + "/"})
	}
	return []AutoEdge{{UIDs: uids}}, nil
}

// shipRes is a fake package: it comes before the paths it ships.
type shipRes struct {
	fake
	ships []string
	err   error
}

func (s *shipRes) AutoEdges(context.Context) ([]AutoEdge, error) {
	var out []AutoEdge
	for _, p := range s.ships {
		out = append(out, AutoEdge{UIDs: []UID{{"file", p}}, Before: true})
	}
	return out, s.err
}

// groupRes is a fake groupable kind.
type groupRes struct {
	fake
	key     string
	members int
}

func (g *groupRes) GroupKey() string { return g.key }
func (g *groupRes) Group(others []Res) (Res, error) {
	return &groupRes{key: g.key, members: 1 + len(others)}, nil
}

func named(kind, name string, r Res) *Vertex {
	return &Vertex{Kind: kind, Name: name, Meta: DefaultMeta(), Res: r}
}

func compile(t *testing.T, vs []*Vertex, edges ...EdgeDecl) *Graph {
	t.Helper()
	g, err := Compile(context.Background(), &Decl{Name: "t", Vertices: vs, Edges: edges}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestAutoEdgesNearestAncestorOnly(t *testing.T) {
	g := compile(t, []*Vertex{
		named("file", "leaf", &pathRes{path: "/var/lib/foo/bar/baz"}),
		named("file", "bar", &pathRes{path: "/var/lib/foo/bar/"}),
		named("file", "lib", &pathRes{path: "/var/lib/"}),
		named("file", "other", &pathRes{path: "/etc/x"}),
	})
	want := `Vertices(4):
  file[bar]
  file[leaf]
  file[lib]
  file[other]
Edges(2):
  file[bar] -> file[leaf]
  file[lib] -> file[bar]
`
	if got := g.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestAutoEdgesBeforeAndWarning(t *testing.T) {
	g := compile(t, []*Vertex{
		named("pkg", "p", &shipRes{ships: []string{"/etc/p.conf", "/usr/share/p/"}, err: fmt.Errorf("one package not found")}),
		named("file", "conf", &pathRes{path: "/etc/p.conf"}),
	})
	if _, ok := g.Edge(g.Vertices()[0], g.Vertices()[1]); !ok {
		t.Fatalf("no edge pkg[p] -> file[conf]:\n%s", g)
	}
}

// kindShipRes is a fake package that says its edges name only files, and
// counts the AutoEdges calls.
type kindShipRes struct {
	shipRes
	name  string
	calls int
}

func (k *kindShipRes) UIDs() []UID             { return []UID{{"pkg", k.name}} }
func (k *kindShipRes) AutoEdgeKinds() []string { return []string{"file"} }
func (k *kindShipRes) AutoEdges(ctx context.Context) ([]AutoEdge, error) {
	k.calls++
	return k.shipRes.AutoEdges(ctx)
}

func TestAutoEdgeKindsSkipsUselessCalls(t *testing.T) {
	// Packages only: no file for their edges to name, AutoEdges is not called.
	a, b := &kindShipRes{shipRes: shipRes{ships: []string{"/etc/a"}}, name: "a"}, &kindShipRes{shipRes: shipRes{ships: []string{"/etc/b"}}, name: "b"}
	g := compile(t, []*Vertex{named("pkg", "a", a), named("pkg", "b", b)})
	if a.calls+b.calls != 0 || g.NumEdges() != 0 {
		t.Fatalf("a graph of packages only: %d AutoEdges calls, %d edges, want none", a.calls+b.calls, g.NumEdges())
	}
	// With a file in the graph it is called, and the edge is made.
	c := &kindShipRes{shipRes: shipRes{ships: []string{"/etc/c"}}, name: "c"}
	g = compile(t, []*Vertex{named("pkg", "c", c), named("file", "conf", &pathRes{path: "/etc/c"})})
	if c.calls != 1 {
		t.Fatalf("a package beside a file: %d AutoEdges calls, want 1", c.calls)
	}
	if _, ok := g.Edge(g.Vertices()[0], g.Vertices()[1]); !ok {
		t.Fatalf("no edge pkg[c] -> file[conf]:\n%s", g)
	}
}

func TestAutoEdgeOff(t *testing.T) {
	leaf := named("file", "leaf", &pathRes{path: "/a/b"})
	leaf.Meta.AutoEdge = false
	g := compile(t, []*Vertex{leaf, named("file", "a", &pathRes{path: "/a/"})})
	if g.NumEdges() != 0 {
		t.Fatalf("meta autoedge false still got edges:\n%s", g)
	}
}

func TestSamePathTwiceIsRefused(t *testing.T) {
	_, err := Compile(context.Background(), &Decl{Vertices: []*Vertex{
		named("file", "a", &pathRes{path: "/etc/x"}),
		named("file", "b", &pathRes{path: "/etc/x"}),
	}}, quietLog())
	if err == nil || !strings.Contains(err.Error(), "both manage file /etc/x") {
		t.Fatalf("want a refusal naming the path, got %v", err)
	}
}

// partRes is a fake line: it manages a part of a path's content, refused
// next to a resource that owns the whole content.
type partRes struct {
	fake
	path, part string
}

func (p *partRes) UIDs() []UID     { return []UID{{"line", p.path + "\n" + p.part}} }
func (p *partRes) Excludes() []UID { return []UID{{"content", p.path}} }

// contentRes owns a path and its whole content.
type contentRes struct {
	fake
	path string
}

func (c *contentRes) UIDs() []UID { return []UID{{"file", c.path}, {"content", c.path}} }

func TestExcludedPartIsRefused(t *testing.T) {
	_, err := Compile(context.Background(), &Decl{Vertices: []*Vertex{
		named("file", "f", &contentRes{path: "/etc/x"}),
		named("line", "l", &partRes{path: "/etc/x", part: "a=1"}),
	}}, quietLog())
	if err == nil || !strings.Contains(err.Error(), "line[l] and file[f] () both manage content /etc/x") {
		t.Fatalf("want a refusal naming both and the path, got %v", err)
	}
	// Two parts of one file, and a part of a file whose content nobody
	// manages, are fine.
	compile(t, []*Vertex{
		named("file", "f", &pathRes{path: "/etc/x"}),
		named("line", "a", &partRes{path: "/etc/x", part: "a=1"}),
		named("line", "b", &partRes{path: "/etc/x", part: "b=2"}),
	})
}

func TestAutoGroupKeepsOrder(t *testing.T) {
	mk := func(name string) *Vertex { return named("pkg", name, &groupRes{key: "k"}) }
	a, b, c, d := mk("a"), mk("b"), mk("c"), mk("d")
	off := mk("off")
	off.Meta.AutoGroup = false
	other := named("pkg", "other", &groupRes{key: "different"})
	f := named("file", "f", &fake{})
	// a -> f -> d: d must stay after a; a, b and c are unordered.
	g := compile(t, []*Vertex{a, b, c, d, off, other, f},
		EdgeDecl{From: Ref{"pkg", "a"}, To: Ref{"file", "f"}},
		EdgeDecl{From: Ref{"file", "f"}, To: Ref{"pkg", "d"}})
	want := `Vertices(5):
  file[f]
  pkg[autogroup:(a,b,c)]
  pkg[d]
  pkg[off]
  pkg[other]
Edges(2):
  file[f] -> pkg[d]
  pkg[autogroup:(a,b,c)] -> file[f]
`
	if got := g.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	for _, v := range g.Vertices() {
		if v.String() == "pkg[autogroup:(a,b,c)]" && v.Res.(*groupRes).members != 3 {
			t.Fatal("the group resource does not act for three members")
		}
	}
}

// Grouping 10,000 groupable vertices in a graph of 20,000 is linear: it
// must not compare them pairwise. Measured in BenchmarkAutoGroup; here only
// the result is checked.
func TestAutoGroupAtScale(t *testing.T) {
	g := groupScaleGraph(t, 10000)
	groups := 0
	for _, v := range g.Vertices() {
		if len(v.Grouped) > 0 {
			groups++
		}
	}
	// The packages, before or after their own file, have no path between
	// them: one group (by longest-path level, there were two).
	if groups != 1 || g.NumVertices() != 10001 {
		t.Fatalf("%d groups, %d vertices; want 1 group and 10001 vertices", groups, g.NumVertices())
	}
}

// 10,000 files in 100 directories, all of one groupable kind: the
// directories form one group and the files another, in linear time.
func TestAutoGroupFilesInDirectories(t *testing.T) {
	g := dirScaleGraph(t, 100, 100)
	var sizes []int
	for _, v := range g.Vertices() {
		sizes = append(sizes, 1+len(v.Grouped))
	}
	sort.Ints(sizes)
	if fmt.Sprint(sizes) != "[100 10000]" || g.NumEdges() != 1 {
		t.Fatalf("groups of %v, %d edges; want [100 10000] and 1 edge:\n%s", sizes, g.NumEdges(), g.String()[:min(500, len(g.String()))])
	}
}

func dirScaleGraph(tb testing.TB, dirs, files int) *Graph {
	d := &Decl{Name: "dirs"}
	for i := range dirs {
		dir := "d" + strconv.Itoa(i)
		d.Vertices = append(d.Vertices, named("file", dir, &groupRes{key: "k"}))
		for j := range files {
			f := dir + "/f" + strconv.Itoa(j)
			d.Vertices = append(d.Vertices, named("file", f, &groupRes{key: "k"}))
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"file", dir}, To: Ref{"file", f}})
		}
	}
	start := time.Now()
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		tb.Fatal(err)
	}
	if t, ok := tb.(*testing.T); ok {
		t.Logf("compiled %d directories of %d files with grouping in %v", dirs, files, time.Since(start))
	}
	return g
}

func groupScaleGraph(tb testing.TB, n int) *Graph {
	d := &Decl{Name: "scale"}
	for i := 0; i < n; i++ {
		s := strconv.Itoa(i)
		d.Vertices = append(d.Vertices, named("pkg", s, &groupRes{key: "k"}), named("file", s, &fake{}))
		// even packages come before their file, odd ones after it
		if i%2 == 0 {
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"pkg", s}, To: Ref{"file", s}})
		} else {
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"file", s}, To: Ref{"pkg", s}})
		}
	}
	start := time.Now()
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		tb.Fatal(err)
	}
	if t, ok := tb.(*testing.T); ok {
		t.Logf("compiled %d vertices with grouping in %v", 2*n, time.Since(start))
	}
	return g
}

func BenchmarkAutoGroupDirectories(b *testing.B) {
	for range b.N {
		dirScaleGraph(b, 100, 100)
	}
}

func BenchmarkAutoGroup(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(2*n)+"-vertices", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				groupScaleGraph(b, n)
			}
		})
	}
}

// Grouping follows the seed's rule: any two resources of a kind with no
// path between them are grouped, on whatever level; and reachability is
// that of the graph with earlier groups contracted, so a grouping never
// closes a cycle through another group. The longest-path-level rule
// grouped neither graph.
func TestAutoGroupSeedRule(t *testing.T) {
	pkg := func(name string) *Vertex { return named("pkg", name, &groupRes{key: "k"}) }
	x := func(name string) *Vertex { return named("x", name, &groupRes{key: "k"}) }
	file := func(name string) *Vertex { return named("file", name, &fake{}) }
	e := func(fk, f, tk, to string) EdgeDecl { return EdgeDecl{From: Ref{fk, f}, To: Ref{tk, to}} }
	for _, tt := range []struct {
		name  string
		vs    []*Vertex
		edges []EdgeDecl
		want  string
	}{{
		name:  "different levels",
		vs:    []*Vertex{file("a"), file("b"), pkg("p1"), pkg("p2")},
		edges: []EdgeDecl{e("file", "a", "file", "b"), e("file", "b", "pkg", "p2")},
		want: `Vertices(3):
  file[a]
  file[b]
  pkg[autogroup:(p1,p2)]
Edges(2):
  file[a] -> file[b]
  file[b] -> pkg[autogroup:(p1,p2)]
`,
	}, {
		// p1 -> x1 and x2 -> p2: once p1 and p2 are one vertex, x2 reaches
		// x1 through it, and grouping x1 with x2 would make a cycle.
		name:  "cycle through another group",
		vs:    []*Vertex{pkg("p1"), pkg("p2"), x("x1"), x("x2")},
		edges: []EdgeDecl{e("pkg", "p1", "x", "x1"), e("x", "x2", "pkg", "p2")},
		want: `Vertices(3):
  pkg[autogroup:(p1,p2)]
  x[x1]
  x[x2]
Edges(2):
  pkg[autogroup:(p1,p2)] -> x[x1]
  x[x2] -> pkg[autogroup:(p1,p2)]
`,
	}, {
		// p1 -> f -> p3 orders p3 after p1; p2 joins p1, p4 (after p2
		// only) joins p3: two groups, one after the other.
		name:  "two passes",
		vs:    []*Vertex{pkg("p1"), pkg("p2"), pkg("p3"), pkg("p4"), file("f")},
		edges: []EdgeDecl{e("pkg", "p1", "file", "f"), e("file", "f", "pkg", "p3"), e("pkg", "p2", "pkg", "p4")},
		want: `Vertices(3):
  file[f]
  pkg[autogroup:(p1,p2)]
  pkg[autogroup:(p3,p4)]
Edges(3):
  file[f] -> pkg[autogroup:(p3,p4)]
  pkg[autogroup:(p1,p2)] -> file[f]
  pkg[autogroup:(p1,p2)] -> pkg[autogroup:(p3,p4)]
`,
	}} {
		t.Run(tt.name, func(t *testing.T) {
			if got := compile(t, tt.vs, tt.edges...).String(); got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
