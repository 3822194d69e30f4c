// Package pgraph is a directed graph of opaque vertices: edges, order, reachability, cycles and DOT output.
package pgraph

import "slices"

// Vertex is anything the graph holds. Vertices are compared by identity, so
// use pointer types; String is the label used in output and errors.
type Vertex interface{ String() string }

// Edge is what an edge carries. Notify means the child is refreshed when the
// parent changes something. Tails names, when the tail is a contraction of
// several vertices (Contract), the members the edge came from; empty, the
// edge leaves from the whole vertex. Heads names likewise the members of a
// contracted head the edge goes to.
type Edge struct {
	Name   string
	Notify bool
	Tails  []string
	Heads  []string
	// Pairs: of an edge between two contractions, which member of the
	// tail reaches which member of the head ({tail, head}); none: any
	// tail to any head.
	Pairs [][2]string
}

// Graph is a directed graph. Vertices, parents and children come back in
// insertion order, so everything it computes is deterministic. A Graph is not
// safe for concurrent mutation; concurrent reads are safe.
type Graph struct {
	Name string

	nodes map[Vertex]*node
	edges map[[2]*node]*edge
	// order holds the vertices in insertion order; node.pos is the index.
	// Deleted vertices stay as dead holes until more than half are holes.
	order     []*node
	orderDead int
}

type node struct {
	v    Vertex
	pos  int // index in Graph.order
	dead bool
	// out and in hold the edges in insertion order, with dead holes
	// counted in outDead and inDead.
	out, in         []*edge
	outDead, inDead int
}

type edge struct {
	from, to *node
	e        Edge
	dead     bool
}

func (n *node) isDead() bool { return n.dead }
func (e *edge) isDead() bool { return e.dead }

// compact drops the dead entries of s once they are more than half of it, so
// that deletions cost amortised O(1) and iterations stay O(live entries).
func compact[T interface{ isDead() bool }](s []T, dead *int) []T {
	if *dead*2 <= len(s) {
		return s
	}
	live := s[:0]
	for _, x := range s {
		if !x.isDead() {
			live = append(live, x)
		}
	}
	clear(s[len(live):])
	*dead = 0
	return live
}

// New returns an empty graph.
func New(name string) *Graph {
	return &Graph{Name: name, nodes: map[Vertex]*node{}, edges: map[[2]*node]*edge{}}
}

func (g *Graph) node(v Vertex) *node {
	if n, ok := g.nodes[v]; ok {
		return n
	}
	n := &node{v: v, pos: len(g.order)}
	g.nodes[v] = n
	g.order = append(g.order, n)
	return n
}

// AddVertex adds the vertices that are not in the graph yet.
func (g *Graph) AddVertex(vs ...Vertex) {
	for _, v := range vs {
		g.node(v)
	}
}

// AddEdge adds an edge from -> to, adding the vertices if needed. If the edge
// exists it is kept (with its name) and e.Notify is OR-ed into it. The graph
// stores a copy of *e; a nil e is an unnamed edge without notify.
func (g *Graph) AddEdge(from, to Vertex, e *Edge) {
	if e == nil {
		e = &Edge{}
	}
	g.addEdge(g.node(from), g.node(to), *e)
}

func (g *Graph) addEdge(f, t *node, e Edge) {
	if ex, ok := g.edges[[2]*node{f, t}]; ok {
		ex.e.Notify = ex.e.Notify || e.Notify
		ex.e.Tails = unionTails(ex.e.Tails, e.Tails)
		ex.e.Heads = unionTails(ex.e.Heads, e.Heads)
		ex.e.Pairs = unionTails(ex.e.Pairs, e.Pairs)
		return
	}
	ed := &edge{from: f, to: t, e: e}
	g.edges[[2]*node{f, t}] = ed
	f.out = append(f.out, ed)
	t.in = append(t.in, ed)
}

// DeleteVertex removes v and its edges. It does nothing if v is not there.
func (g *Graph) DeleteVertex(v Vertex) {
	n, ok := g.nodes[v]
	if !ok {
		return
	}
	// n's own lists are dropped whole; only the other ends are unlinked.
	for _, e := range n.out {
		if !e.dead {
			e.dead = true
			delete(g.edges, [2]*node{n, e.to})
			if e.to != n {
				e.to.inDead++
				e.to.in = compact(e.to.in, &e.to.inDead)
			}
		}
	}
	for _, e := range n.in {
		if !e.dead {
			e.dead = true
			delete(g.edges, [2]*node{e.from, n})
			e.from.outDead++
			e.from.out = compact(e.from.out, &e.from.outDead)
		}
	}
	n.dead = true
	n.out, n.in = nil, nil
	delete(g.nodes, v)
	g.orderDead++
	before := len(g.order)
	g.order = compact(g.order, &g.orderDead)
	if len(g.order) != before {
		for i, n := range g.order {
			n.pos = i
		}
	}
}

// DeleteEdge removes the edge from -> to if there is one.
func (g *Graph) DeleteEdge(from, to Vertex) {
	f, t := g.nodes[from], g.nodes[to]
	if f == nil || t == nil {
		return
	}
	if e, ok := g.edges[[2]*node{f, t}]; ok {
		g.deleteEdge(e)
	}
}

func (g *Graph) deleteEdge(e *edge) {
	if e.dead {
		return
	}
	e.dead = true
	delete(g.edges, [2]*node{e.from, e.to})
	e.from.outDead++
	e.from.out = compact(e.from.out, &e.from.outDead)
	e.to.inDead++
	e.to.in = compact(e.to.in, &e.to.inDead)
}

// HasVertex reports whether v is in the graph.
func (g *Graph) HasVertex(v Vertex) bool {
	_, ok := g.nodes[v]
	return ok
}

// Edge returns the edge from -> to. The returned *Edge is the graph's own:
// changing it changes the graph.
func (g *Graph) Edge(from, to Vertex) (*Edge, bool) {
	f, t := g.nodes[from], g.nodes[to]
	if f == nil || t == nil {
		return nil, false
	}
	e, ok := g.edges[[2]*node{f, t}]
	if !ok {
		return nil, false
	}
	return &e.e, true
}

// Vertices returns the vertices in insertion order.
func (g *Graph) Vertices() []Vertex {
	vs := make([]Vertex, 0, len(g.nodes))
	for _, n := range g.order {
		if !n.dead {
			vs = append(vs, n.v)
		}
	}
	return vs
}

// Parents returns the vertices with an edge to v, in the order the edges were added.
func (g *Graph) Parents(v Vertex) []Vertex {
	n := g.nodes[v]
	if n == nil {
		return nil
	}
	vs := make([]Vertex, 0, len(n.in)-n.inDead)
	for _, e := range n.in {
		if !e.dead {
			vs = append(vs, e.from.v)
		}
	}
	return vs
}

// Children returns the vertices v has an edge to, in the order the edges were added.
func (g *Graph) Children(v Vertex) []Vertex {
	n := g.nodes[v]
	if n == nil {
		return nil
	}
	vs := make([]Vertex, 0, len(n.out)-n.outDead)
	for _, e := range n.out {
		if !e.dead {
			vs = append(vs, e.to.v)
		}
	}
	return vs
}

// NumVertices returns the number of vertices.
func (g *Graph) NumVertices() int { return len(g.nodes) }

// NumEdges returns the number of edges.
func (g *Graph) NumEdges() int { return len(g.edges) }

// Copy returns a graph with the same name, the same Vertex values and copies
// of the edges, in the same orders.
func (g *Graph) Copy() *Graph {
	c := &Graph{
		Name:  g.Name,
		nodes: make(map[Vertex]*node, len(g.nodes)),
		edges: make(map[[2]*node]*edge, len(g.edges)),
		order: make([]*node, 0, len(g.nodes)),
	}
	same := make([]*node, len(g.order)) // old pos -> new node
	for _, n := range g.order {
		if !n.dead {
			same[n.pos] = c.node(n.v)
		}
	}
	for _, n := range g.order {
		for _, e := range n.out {
			if e.dead {
				continue
			}
			f, t := same[e.from.pos], same[e.to.pos]
			ce := &edge{from: f, to: t, e: e.e}
			c.edges[[2]*node{f, t}] = ce
			f.out = append(f.out, ce)
		}
	}
	for _, n := range g.order { // the same again for the in lists, to keep their order
		for _, e := range n.in {
			if !e.dead {
				t := same[e.to.pos]
				t.in = append(t.in, c.edges[[2]*node{same[e.from.pos], t}])
			}
		}
	}
	return c
}

// unionTails merges the tails of two edges that became one: empty (the whole
// vertex) wins, else the union in order of first appearance.
func unionTails[T comparable](a, b []T) []T {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	out := append([]T(nil), a...)
	for _, t := range b {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
