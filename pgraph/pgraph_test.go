package pgraph

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// tv is a test vertex; two tvs with the same name are still different vertices.
type tv struct{ name string }

func (v *tv) String() string { return v.name }

// tgroup is a test vertex standing for several members.
type tgroup struct {
	name    string
	members []string
}

func (v *tgroup) String() string    { return v.name }
func (v *tgroup) Members() []string { return v.members }

// fixture builds a graph from "a -> b" and "a => b" (notify) specs and
// returns it with its vertices by name. A lone "x" just adds a vertex.
func fixture(t testing.TB, specs ...string) (*Graph, map[string]*tv) {
	t.Helper()
	g := New("test")
	vs := map[string]*tv{}
	get := func(name string) *tv {
		if vs[name] == nil {
			vs[name] = &tv{name}
		}
		return vs[name]
	}
	for _, s := range specs {
		f := strings.Fields(s)
		switch {
		case len(f) == 1:
			g.AddVertex(get(f[0]))
		case len(f) == 3 && (f[1] == "->" || f[1] == "=>"):
			g.AddEdge(get(f[0]), get(f[2]), &Edge{Name: f[0] + "-" + f[2], Notify: f[1] == "=>"})
		default:
			t.Fatalf("bad fixture line %q", s)
		}
	}
	return g, vs
}

func names(vs []Vertex) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return strings.Join(s, " ")
}

func TestAddDelete(t *testing.T) {
	g, v := fixture(t, "a -> b", "a -> c", "b -> c", "d -> c", "e")
	g.AddVertex(v["a"], v["e"]) // idempotent
	if got, want := names(g.Vertices()), "a b c d e"; got != want {
		t.Errorf("Vertices = %q, want %q", got, want)
	}
	if got, want := names(g.Parents(v["c"])), "a b d"; got != want {
		t.Errorf("Parents(c) = %q, want %q", got, want)
	}
	if got, want := names(g.Children(v["a"])), "b c"; got != want {
		t.Errorf("Children(a) = %q, want %q", got, want)
	}
	if g.NumVertices() != 5 || g.NumEdges() != 4 {
		t.Errorf("counts = %d, %d, want 5, 4", g.NumVertices(), g.NumEdges())
	}

	g.DeleteVertex(v["b"])
	g.DeleteEdge(v["d"], v["c"])
	g.DeleteEdge(v["c"], v["d"])   // no such edge
	g.DeleteVertex(&tv{"a"})       // a different vertex with the same label
	g.DeleteEdge(&tv{"x"}, v["a"]) // not in the graph
	if got, want := g.String(), "Vertices(4):\n  a\n  c\n  d\n  e\nEdges(1):\n  a -> c\n"; got != want {
		t.Errorf("after deletes:\n%s\nwant:\n%s", got, want)
	}
	if g.HasVertex(v["b"]) || !g.HasVertex(v["a"]) {
		t.Error("HasVertex wrong after DeleteVertex(b)")
	}
	if _, ok := g.Edge(v["a"], v["b"]); ok {
		t.Error("edge a -> b survived the deletion of b")
	}
	if got := g.Parents(v["b"]); got != nil {
		t.Errorf("Parents of a deleted vertex = %v", got)
	}

	g.AddVertex(v["b"]) // back, at the end of the order
	if got, want := names(g.Vertices()), "a c d e b"; got != want {
		t.Errorf("Vertices after re-adding b = %q, want %q", got, want)
	}
}

// TestDeleteMany deletes enough to compact the internal lists and checks
// that every order survives.
func TestDeleteMany(t *testing.T) {
	g := New("many")
	hub := &tv{"hub"}
	g.AddVertex(hub)
	var vs []*tv
	for i := range 100 {
		v := &tv{fmt.Sprint(i)}
		vs = append(vs, v)
		g.AddEdge(v, hub, nil)
		g.AddEdge(hub, v, nil)
	}
	var want []string
	for i, v := range vs {
		if i%3 == 0 {
			want = append(want, v.name)
		} else {
			g.DeleteVertex(v)
		}
	}
	if got := names(g.Vertices()); got != "hub "+strings.Join(want, " ") {
		t.Errorf("Vertices = %q", got)
	}
	if got := names(g.Parents(hub)); got != strings.Join(want, " ") {
		t.Errorf("Parents(hub) = %q", got)
	}
	if got := names(g.Children(hub)); got != strings.Join(want, " ") {
		t.Errorf("Children(hub) = %q", got)
	}
	if g.NumEdges() != 2*len(want) {
		t.Errorf("NumEdges = %d, want %d", g.NumEdges(), 2*len(want))
	}
	for _, v := range vs[:10] {
		g.DeleteEdge(hub, v)
	}
	if got, want := names(g.Children(hub)), strings.Join(want[4:], " "); got != want {
		t.Errorf("Children(hub) after edge deletes = %q, want %q", got, want)
	}
	if got, want := names(g.Parents(vs[33])), "hub"; got != want {
		t.Errorf("Parents(33) = %q, want %q", got, want)
	}

	// The algorithms and Copy see through the holes the deletions left.
	g.DeleteEdge(vs[0], hub) // hub -> 0 was deleted above: 0 is now a source
	for _, v := range vs[10:] {
		g.DeleteEdge(v, hub) // the rest are only hub's children now
	}
	order, err := g.TopologicalSort()
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, g, order)
	if c := g.Copy(); c.String() != g.String() || names(c.Children(hub)) != names(g.Children(hub)) {
		t.Errorf("copy after deletions differs:\n%s\nfrom:\n%s", c, g)
	}
}

// TestGonumAdapter checks the parts of graph.Directed that gonum's topo
// functions do not call against the view.
func TestGonumAdapter(t *testing.T) {
	g, v := fixture(t, "a -> b", "b -> c", "x", "c -> a")
	g.DeleteVertex(v["x"]) // ids: a 0, b 1, c 2, and a hole at 3
	gv := g.view(nil, nil).gonum()
	if gv.Node(-1) != nil || gv.Node(3) != nil || gv.Node(99) != nil || gv.Node(0) == nil {
		t.Error("Node answers for holes or out of range ids, or not for a vertex")
	}
	if gv.From(3).Len() != 0 {
		t.Error("From of a hole is not empty")
	}
	for _, tt := range []struct {
		from, to int64
		want     bool
	}{{0, 1, true}, {1, 0, false}, {1, 2, true}, {2, 0, true}, {0, 2, false}, {3, 0, false}} {
		if got := gv.HasEdgeFromTo(tt.from, tt.to); got != tt.want {
			t.Errorf("HasEdgeFromTo(%d, %d) = %v", tt.from, tt.to, got)
		}
		if got := gv.Edge(tt.from, tt.to) != nil; got != tt.want {
			t.Errorf("Edge(%d, %d) present = %v", tt.from, tt.to, got)
		}
		if got, want := gv.HasEdgeBetween(tt.to, tt.from), tt.want || gv.HasEdgeFromTo(tt.to, tt.from); got != want {
			t.Errorf("HasEdgeBetween(%d, %d) = %v", tt.to, tt.from, got)
		}
	}
	if to := gv.To(0); to.Len() != 1 || !to.Next() || to.Node().ID() != 2 {
		t.Error("To(a) is not {c}")
	}
}

// TestConcurrentReads runs the read-only methods at once; with -race it
// proves they do not write to the graph.
func TestConcurrentReads(t *testing.T) {
	g := randomDAG(500, 1500, 7)
	v := g.Vertices()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			_, _ = g.TopologicalSort()
			_, _ = g.Levels()
			_ = g.Cycles()
			_ = g.Reachable(v[0], v[len(v)-1])
			_ = g.String()
			_ = g.Copy()
			_ = g.WriteDOT(io.Discard)
		}()
	}
	for range 4 {
		<-done
	}
}

func TestAddEdgeMerge(t *testing.T) {
	tests := []struct {
		name   string
		first  *Edge
		second *Edge
		want   Edge
	}{
		{"plain twice", &Edge{Name: "one"}, &Edge{Name: "two"}, Edge{Name: "one"}},
		{"notify added", &Edge{Name: "one"}, &Edge{Name: "two", Notify: true}, Edge{Name: "one", Notify: true}},
		{"notify kept", &Edge{Name: "one", Notify: true}, &Edge{Name: "two"}, Edge{Name: "one", Notify: true}},
		{"nil edges", nil, nil, Edge{}},
		{"nil then notify", nil, &Edge{Notify: true}, Edge{Notify: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := &tv{"a"}, &tv{"b"}
			g := New(tt.name)
			g.AddEdge(a, b, tt.first)
			g.AddEdge(a, b, tt.second)
			got, ok := g.Edge(a, b)
			if !ok || !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("Edge(a, b) = %+v, %v; want %+v", got, ok, tt.want)
			}
			if g.NumEdges() != 1 || len(g.Children(a)) != 1 || len(g.Parents(b)) != 1 {
				t.Errorf("duplicate edge stored: %d edges", g.NumEdges())
			}
			if tt.first != nil {
				tt.first.Notify = !tt.first.Notify // the graph holds its own copy
				if again, _ := g.Edge(a, b); !reflect.DeepEqual(*again, tt.want) {
					t.Errorf("changing the caller's Edge changed the graph: %+v", *again)
				}
			}
		})
	}
}

func TestCopy(t *testing.T) {
	g, v := fixture(t, "c -> a", "b -> a", "a => d", "e")
	c := g.Copy()
	if c.String() != g.String() || c.Name != g.Name {
		t.Fatalf("copy differs:\n%s\nfrom:\n%s", c, g)
	}
	if got, want := names(c.Parents(v["a"])), "c b"; got != want {
		t.Errorf("copy Parents(a) = %q, want %q", got, want)
	}
	e, _ := c.Edge(v["a"], v["d"])
	e.Notify = false
	c.DeleteVertex(v["b"])
	c.AddEdge(v["e"], v["a"], nil)
	if orig, _ := g.Edge(v["a"], v["d"]); !orig.Notify {
		t.Error("changing an edge of the copy changed the original")
	}
	if want := "Vertices(5):\n  a\n  b\n  c\n  d\n  e\nEdges(3):\n  a -> d (notify)\n  b -> a\n  c -> a\n"; g.String() != want {
		t.Errorf("original changed by the copy:\n%s", g)
	}
}

// checkOrder fails unless order holds every vertex of g once, with every edge pointing forward.
func checkOrder(t *testing.T, g *Graph, order []Vertex) {
	t.Helper()
	pos := make(map[Vertex]int, len(order))
	for i, v := range order {
		if _, dup := pos[v]; dup {
			t.Fatalf("vertex %s twice in the order", v)
		}
		pos[v] = i
	}
	if len(order) != g.NumVertices() {
		t.Fatalf("order has %d vertices, graph %d", len(order), g.NumVertices())
	}
	for _, u := range g.Vertices() {
		for _, w := range g.Children(u) {
			if pos[u] >= pos[w] {
				t.Fatalf("edge %s -> %s points backwards (%d >= %d)", u, w, pos[u], pos[w])
			}
		}
	}
}

// randomDAG adds m random forward edges over n vertices listed in a shuffled insertion order.
func randomDAG(n, m int, seed uint64) *Graph {
	r := rand.New(rand.NewPCG(seed, 0))
	vs := make([]*tv, n)
	for i := range vs {
		vs[i] = &tv{fmt.Sprint(i)}
	}
	g := New("random")
	for _, i := range r.Perm(n) {
		g.AddVertex(vs[i])
	}
	for range m {
		i, j := r.IntN(n), r.IntN(n)
		if i != j {
			g.AddEdge(vs[min(i, j)], vs[max(i, j)], nil)
		}
	}
	return g
}

func TestTopologicalSort(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		want  string // the exact order, when the test pins it
	}{
		{"empty", nil, ""},
		{"independent", []string{"a", "b", "c"}, "a b c"},
		{"chain", []string{"a -> b", "b -> c", "c -> d"}, "a b c d"},
		{"chain added backwards", []string{"c -> d", "b -> c", "a -> b"}, "a b c d"},
		{"fan", []string{"r -> a", "r -> b", "r -> c"}, "r a b c"},
		{"fan in", []string{"a -> s", "b -> s", "c -> s"}, ""},
		{"diamond", []string{"a -> b", "a -> c", "b -> d", "c -> d"}, ""},
		{"two components", []string{"x -> y", "a -> b", "y -> z", "b -> c"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := fixture(t, tt.specs...)
			order, err := g.TopologicalSort()
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, g, order)
			if tt.want != "" && names(order) != tt.want {
				t.Errorf("order = %q, want %q", names(order), tt.want)
			}
		})
	}
	t.Run("random", func(t *testing.T) {
		for seed := range uint64(5) {
			g := randomDAG(2000, 6000, seed)
			order, err := g.TopologicalSort()
			if err != nil {
				t.Fatal(err)
			}
			checkOrder(t, g, order)
			again, _ := g.TopologicalSort()
			if !slices.Equal(order, again) {
				t.Fatal("two sorts of the same graph differ")
			}
		}
	})
}

func TestCycles(t *testing.T) {
	// a chain of 5000 with a short cycle deep inside and a long tail after it
	var deep []string
	for i := range 5000 {
		deep = append(deep, fmt.Sprintf("v%d -> v%d", i, i+1))
	}
	deep = append(deep, "v4000 -> v3997")

	tests := []struct {
		name  string
		specs []string
		want  string // CycleError.Error()
	}{
		{"two-cycle", []string{"exec[a] -> exec[b]", "exec[b] -> exec[a]"}, "cycle: exec[a] -> exec[b] -> exec[a]"},
		{"self-loop", []string{"x -> y", "y -> y"}, "cycle: y -> y"},
		{"three-cycle from first inserted", []string{"p", "c -> a", "b -> c", "a -> b"}, "cycle: c -> a -> b -> c"},
		{"deep in a big graph", deep, "cycle: v3997 -> v3998 -> v3999 -> v4000 -> v3997"},
		{"two disjoint cycles", []string{"a -> b", "b -> a", "x -> c", "c -> d", "d -> e", "e -> c", "b -> x"},
			"cycle: a -> b -> a; cycle: c -> d -> e -> c"},
		{"shortest cycle through the first vertex", []string{"a -> b", "b -> c", "c -> d", "d -> a", "b -> a"},
			"cycle: a -> b -> a"},
		{"self-loop and cycle", []string{"s -> s", "a -> b", "b -> a", "s -> a"}, "cycle: s -> s; cycle: a -> b -> a"},
		{"self-loop inside a cycle", []string{"a -> b", "b -> a", "b -> b"}, "cycle: a -> b -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := fixture(t, tt.specs...)
			_, err := g.TopologicalSort()
			var ce *CycleError
			if !errors.As(err, &ce) {
				t.Fatalf("TopologicalSort error = %v, want a *CycleError", err)
			}
			if ce.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", ce.Error(), tt.want)
			}
			if got := (&CycleError{Cycles: g.Cycles()}).Error(); got != tt.want {
				t.Errorf("Cycles() = %q\nwant      %q", got, tt.want)
			}
			for _, c := range ce.Cycles { // each cycle is a real path in g
				for i, v := range c {
					if _, ok := g.Edge(v, c[(i+1)%len(c)]); !ok {
						t.Errorf("cycle %v: no edge %s -> %s", names(c), v, c[(i+1)%len(c)])
					}
				}
			}
			if _, err := g.Levels(); !errors.As(err, &ce) {
				t.Errorf("Levels error = %v, want a *CycleError", err)
			}
		})
	}
	t.Run("acyclic", func(t *testing.T) {
		g, _ := fixture(t, "a -> b", "b -> c", "a -> c")
		if c := g.Cycles(); c != nil {
			t.Errorf("Cycles() = %v on a DAG", c)
		}
	})
}

func TestReachable(t *testing.T) {
	g, v := fixture(t, "a -> b", "b -> c", "c -> d", "x -> c", "y", "l -> l")
	tests := []struct {
		from, to string
		want     bool
	}{
		{"a", "d", true},
		{"a", "b", true},
		{"d", "a", false},
		{"x", "d", true},
		{"x", "a", false},
		{"a", "x", false},
		{"a", "a", true},
		{"y", "y", true},
		{"y", "a", false},
		{"l", "l", true},
	}
	for _, tt := range tests {
		if got := g.Reachable(v[tt.from], v[tt.to]); got != tt.want {
			t.Errorf("Reachable(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
	if g.Reachable(v["a"], &tv{"d"}) {
		t.Error("Reachable to a vertex not in the graph")
	}
}

func TestLevels(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		want  map[string]int
	}{
		{"chain", []string{"a -> b", "b -> c", "c -> d"}, map[string]int{"a": 0, "b": 1, "c": 2, "d": 3}},
		{"fan out", []string{"r -> a", "r -> b", "r -> c"}, map[string]int{"r": 0, "a": 1, "b": 1, "c": 1}},
		{"fan in", []string{"a -> s", "b -> s", "c"}, map[string]int{"a": 0, "b": 0, "c": 0, "s": 1}},
		{"diamond", []string{"a -> b", "a -> c", "b -> d", "c -> d"}, map[string]int{"a": 0, "b": 1, "c": 1, "d": 2}},
		{"diamond with a long side", []string{"a -> b", "b -> b2", "b2 -> d", "a -> c", "c -> d", "a -> d"},
			map[string]int{"a": 0, "b": 1, "b2": 2, "c": 1, "d": 3}},
		{"two sources", []string{"a -> b", "b -> c", "x -> c"}, map[string]int{"a": 0, "b": 1, "x": 0, "c": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, v := fixture(t, tt.specs...)
			got, err := g.Levels()
			if err != nil {
				t.Fatal(err)
			}
			want := map[Vertex]int{}
			for name, l := range tt.want {
				want[v[name]] = l
			}
			if len(got) != len(want) {
				t.Errorf("Levels has %d vertices, want %d", len(got), len(want))
			}
			for vx, l := range want {
				if got[vx] != l {
					t.Errorf("level of %s = %d, want %d", vx, got[vx], l)
				}
			}
		})
	}
}

func TestContract(t *testing.T) {
	grp := &tv{"group"}
	tests := []struct {
		name    string
		specs   []string
		members []string
		into    string // a member's name, or "" for the new vertex grp
		want    string // g.String() after, or the error's CycleError text
		cycle   bool
	}{
		{"redirect", []string{"p -> a", "a -> c", "q -> b", "b -> d"}, []string{"a", "b"}, "",
			"Vertices(5):\n  c\n  d\n  group\n  p\n  q\nEdges(4):\n  group -> c\n  group -> d\n  p -> group\n  q -> group\n", false},
		{"merge duplicates", []string{"p -> a", "p => b", "a -> c", "b -> c", "a -> b"}, []string{"a", "b"}, "",
			"Vertices(3):\n  c\n  group\n  p\nEdges(2):\n  group -> c\n  p -> group (notify)\n", false},
		{"into a member", []string{"p -> a", "b => c", "a -> b", "b -> b"}, []string{"a", "b"}, "a",
			"Vertices(3):\n  a\n  c\n  p\nEdges(2):\n  a -> c (notify)\n  p -> a\n", false},
		{"into a member with existing edge", []string{"a -> c", "b => c"}, []string{"b", "a"}, "a",
			"Vertices(2):\n  a\n  c\nEdges(1):\n  a -> c (notify)\n", false},
		{"parallel chain", []string{"a -> a2", "b -> b2", "a2 -> z", "b2 -> z"}, []string{"a", "b"}, "",
			"Vertices(4):\n  a2\n  b2\n  group\n  z\nEdges(4):\n  a2 -> z\n  b2 -> z\n  group -> a2\n  group -> b2\n", false},
		{"refuse a -> x -> b", []string{"a -> x", "x -> b", "b -> y"}, []string{"a", "b"}, "",
			"cycle: group -> x -> group", true},
		{"refuse, into a member", []string{"a -> x", "x -> y", "y -> b"}, []string{"a", "b"}, "b",
			"cycle: b -> x -> y -> b", true},
		{"refuse an existing cycle elsewhere", []string{"a -> b", "u -> w", "w -> u"}, []string{"a", "b"}, "",
			"cycle: u -> w -> u", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, v := fixture(t, tt.specs...)
			var members []Vertex
			for _, m := range tt.members {
				members = append(members, v[m])
			}
			var into Vertex = grp
			if tt.into != "" {
				into = v[tt.into]
			}
			before := g.String()
			beforeOrder := names(g.Vertices())
			err := g.Contract(members, into)
			if tt.cycle {
				var ce *CycleError
				if !errors.As(err, &ce) {
					t.Fatalf("Contract error = %v, want a *CycleError", err)
				}
				if ce.Error() != tt.want {
					t.Errorf("cycle = %q, want %q", ce.Error(), tt.want)
				}
				if g.String() != before || names(g.Vertices()) != beforeOrder {
					t.Errorf("graph changed by a refused contraction:\n%s\nwas:\n%s", g, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := g.String(); got != tt.want {
				t.Errorf("after Contract:\n%s\nwant:\n%s", got, tt.want)
			}
			if _, err := g.TopologicalSort(); err != nil {
				t.Errorf("contracted graph does not sort: %v", err)
			}
		})
	}
	t.Run("missing member", func(t *testing.T) {
		g, v := fixture(t, "a -> b")
		before := g.String()
		if err := g.Contract([]Vertex{v["a"], &tv{"ghost"}}, grp); !errors.Is(err, ErrNoVertex) {
			t.Errorf("error = %v, want ErrNoVertex", err)
		}
		if g.String() != before {
			t.Error("graph changed")
		}
	})
	t.Run("no members", func(t *testing.T) {
		g, _ := fixture(t, "a -> b")
		if err := g.Contract(nil, grp); err == nil || g.HasVertex(grp) {
			t.Errorf("Contract(nil) = %v, graph has group: %v", err, g.HasVertex(grp))
		}
	})
	t.Run("existing into not listed", func(t *testing.T) {
		g, v := fixture(t, "p -> a", "a -> k", "k -> q")
		if err := g.Contract([]Vertex{v["a"]}, v["k"]); err != nil {
			t.Fatal(err)
		}
		if got, want := g.String(), "Vertices(3):\n  k\n  p\n  q\nEdges(2):\n  k -> q\n  p -> k\n"; got != want {
			t.Errorf("got:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestString(t *testing.T) {
	g, _ := fixture(t, "svc[b] -> file[z]", "pkg[a] => svc[b]", "pkg[a] -> file[z]", "lonely")
	want := `Vertices(4):
  file[z]
  lonely
  pkg[a]
  svc[b]
Edges(3):
  pkg[a] -> file[z]
  pkg[a] -> svc[b] (notify)
  svc[b] -> file[z]
`
	if got := g.String(); got != want {
		t.Errorf("String():\n%s\nwant:\n%s", got, want)
	}
	if got, want := New("empty").String(), "Vertices(0):\nEdges(0):\n"; got != want {
		t.Errorf("empty String() = %q, want %q", got, want)
	}
}

// TestContractKeepsTails: an edge leaving a contraction names the members
// it came from; two members' edges to one child merge into one edge naming
// both; an edge already naming tails keeps them through a second contraction,
// and merging with a whole-vertex edge means the whole vertex.
func TestContractKeepsTails(t *testing.T) {
	m1, m2, m3, c1, c2, grp := &tv{"m1"}, &tv{"m2"}, &tv{"m3"}, &tv{"c1"}, &tv{"c2"}, &tv{"grp"}
	g := New("tails")
	g.AddEdge(m1, c1, &Edge{Name: "a"})
	g.AddEdge(m2, c1, &Edge{Name: "b", Notify: true})
	g.AddEdge(m2, c2, &Edge{Name: "c"})
	g.AddVertex(m3)
	if err := g.Contract([]Vertex{m1, m2}, grp); err != nil {
		t.Fatal(err)
	}
	e1, _ := g.Edge(grp, c1)
	e2, _ := g.Edge(grp, c2)
	if e1 == nil || !reflect.DeepEqual(e1.Tails, []string{"m1", "m2"}) || !e1.Notify {
		t.Fatalf("grp -> c1 = %+v; want tails m1, m2 and notify", e1)
	}
	if e2 == nil || !reflect.DeepEqual(e2.Tails, []string{"m2"}) {
		t.Fatalf("grp -> c2 = %+v; want tails m2", e2)
	}
	p1, p2, h := &tv{"p1"}, &tv{"p2"}, &tv{"h"}
	g.AddEdge(p1, c1, &Edge{Name: "p1"})
	g.AddEdge(p2, c1, &Edge{Name: "p2"})
	g.AddEdge(p1, c2, &Edge{Name: "p1b"})
	if err := g.Contract([]Vertex{c1, c2}, h); err != nil {
		t.Fatal(err)
	}
	if e, _ := g.Edge(p1, h); e == nil || !reflect.DeepEqual(slices.Sorted(slices.Values(e.Heads)), []string{"c1", "c2"}) {
		t.Fatalf("p1 -> h = %+v; want heads c1, c2", e)
	}
	if e, _ := g.Edge(p2, h); e == nil || !reflect.DeepEqual(e.Heads, []string{"c1"}) {
		t.Fatalf("p2 -> h = %+v; want heads c1", e)
	}
	if e, _ := g.Edge(grp, h); e == nil || !reflect.DeepEqual(e.Tails, []string{"m1", "m2"}) || !reflect.DeepEqual(slices.Sorted(slices.Values(e.Heads)), []string{"c1", "c2"}) {
		t.Fatalf("grp -> h = %+v; want tails m1, m2 and heads c1, c2", e)
	}
	// undo for the rest of the test: a fresh graph with c2 for the next step
	g.DeleteVertex(h)
	g.AddEdge(grp, c2, &Edge{Name: "c", Tails: []string{"m2"}})
	big := &tv{"big"}
	g.AddEdge(m3, c2, &Edge{Name: "d"})
	if err := g.Contract([]Vertex{grp, m3}, big); err != nil {
		t.Fatal(err)
	}
	if e, _ := g.Edge(big, c2); e == nil || !reflect.DeepEqual(slices.Sorted(slices.Values(e.Tails)), []string{"m2", "m3"}) {
		t.Fatalf("big -> c2 = %+v; want tails m2, m3", e)
	}
	g.AddEdge(big, c2, &Edge{Name: "whole"})
	if e, _ := g.Edge(big, c2); len(e.Tails) != 0 {
		t.Fatalf("an edge from the whole vertex merged in: tails %v, want none", e.Tails)
	}
}

// Two edges between members of two contractions merge into one edge that
// keeps which member reaches which, whichever side is contracted first.
func TestContractKeepsPairs(t *testing.T) {
	for _, aFirst := range []bool{true, false} {
		g := New("t")
		a1, a2, b1, b2, ga, gb := &tv{"a1"}, &tv{"a2"}, &tv{"b1"}, &tv{"b2"}, &tv{"ga"}, &tv{"gb"}
		g.AddEdge(a1, b1, &Edge{Name: "1"})
		g.AddEdge(a2, b2, &Edge{Name: "2"})
		steps := [][]Vertex{{a1, a2, ga}, {b1, b2, gb}}
		if !aFirst {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, s := range steps {
			if err := g.Contract(s[:2], s[2]); err != nil {
				t.Fatal(err)
			}
		}
		e, _ := g.Edge(ga, gb)
		if e == nil {
			t.Fatal("no edge ga -> gb")
		}
		got := slices.SortedFunc(slices.Values(e.Pairs), func(x, y [2]string) int { return strings.Compare(x[0]+x[1], y[0]+y[1]) })
		if want := [][2]string{{"a1", "b1"}, {"a2", "b2"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("a first %v: ga -> gb pairs %v; want %v", aFirst, got, want)
		}
	}
}

// Many members' edges from one parent become one edge to the group, its
// heads in the members' order, Notify if any was; ContractAntichain does
// what Contract does for members none of which reaches another.
func TestContractManyIntoOneEdge(t *testing.T) {
	for _, antichain := range []bool{false, true} {
		g := New("many")
		p, c := &tv{"p"}, &tv{"c"}
		var members []Vertex
		var want []string
		for i := range 5000 {
			m := &tv{fmt.Sprintf("m%04d", i)}
			g.AddEdge(p, m, &Edge{Name: m.name, Notify: i == 2500})
			g.AddEdge(m, c, &Edge{Name: m.name + "-c"})
			members = append(members, m)
			want = append(want, m.name)
		}
		grp := &tv{"grp"}
		contract := g.Contract
		if antichain {
			contract = g.ContractAntichain
		}
		if err := contract(members, grp); err != nil {
			t.Fatal(err)
		}
		in, _ := g.Edge(p, grp)
		if in == nil || !in.Notify || !reflect.DeepEqual(in.Heads, want) || len(in.Tails) != 0 || len(in.Pairs) != 0 {
			t.Fatalf("antichain %v: p -> grp = %+v; want notify and heads m0000..m4999 in order", antichain, in)
		}
		out, _ := g.Edge(grp, c)
		if out == nil || out.Notify || !reflect.DeepEqual(out.Tails, want) || len(out.Heads) != 0 {
			t.Fatalf("antichain %v: grp -> c = %+v; want tails m0000..m4999 in order", antichain, out)
		}
		if n := len(g.Vertices()); n != 3 {
			t.Fatalf("antichain %v: %d vertices left, want p, grp, c", antichain, n)
		}
	}
}

// BenchmarkContractManyMembers contracts 10,000 members that share one
// parent and one child (the files of a directory, their directory, and a
// command after them) into one group.
func BenchmarkContractManyMembers(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		g := New("many")
		p, c := &tv{"p"}, &tv{"c"}
		members := make([]Vertex, 10000)
		for i := range members {
			m := &tv{fmt.Sprintf("m%05d", i)}
			g.AddEdge(p, m, &Edge{Name: "p-" + m.name})
			g.AddEdge(m, c, &Edge{Name: m.name + "-c"})
			members[i] = m
		}
		b.StartTimer()
		if err := g.ContractAntichain(members, &tv{"grp"}); err != nil {
			b.Fatal(err)
		}
	}
}
