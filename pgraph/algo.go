package pgraph

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/iterator"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
)

// ErrNoVertex is returned when an operation names a vertex that is not in the graph.
var ErrNoVertex = errors.New("no such vertex")

// CycleError reports the cycles that make a graph unorderable.
type CycleError struct {
	// Cycles holds each cycle in path order, starting from its vertex that
	// came first in insertion order; the first vertex is not repeated.
	Cycles [][]Vertex
}

func (e *CycleError) Error() string {
	parts := make([]string, len(e.Cycles))
	for i, c := range e.Cycles {
		var b strings.Builder
		b.WriteString("cycle: ")
		for _, v := range c {
			b.WriteString(v.String())
			b.WriteString(" -> ")
		}
		if len(c) > 0 {
			b.WriteString(c[0].String())
		}
		parts[i] = b.String()
	}
	return strings.Join(parts, "; ")
}

// view is a dense, read-only snapshot the algorithms run on. Vertex i is the
// one at position i of the insertion order (nil for a hole) and its
// successors are adj[off[i]:off[i+1]], in edge insertion order.
type view struct {
	verts []Vertex
	live  int // non-nil verts
	off   []int
	adj   []int
}

// view snapshots g. The nodes in merge, if any, become one vertex labelled
// into at the first member's position, and the edges among them are dropped:
// the graph as it would be after contracting them.
func (g *Graph) view(merge map[*node]bool, into Vertex) *view {
	n := len(g.order)
	at := -1 // position of the merged vertex
	rep := func(x *node) int {
		if merge[x] {
			return at
		}
		return x.pos
	}
	v := &view{verts: make([]Vertex, n), off: make([]int, n+1)}
	for _, x := range g.order {
		if x.dead {
			continue
		}
		if merge[x] {
			if at < 0 {
				at = x.pos
				v.verts[at] = into
				v.live++
			}
		} else {
			v.verts[x.pos] = x.v
			v.live++
		}
	}
	keep := func(e *edge) bool { return !e.dead && !(merge[e.from] && merge[e.to]) }
	for _, x := range g.order {
		for _, e := range x.out {
			if keep(e) {
				v.off[rep(x)+1]++
			}
		}
	}
	for i := range n {
		v.off[i+1] += v.off[i]
	}
	v.adj = make([]int, v.off[n])
	next := slices.Clone(v.off[:n])
	for _, x := range g.order {
		for _, e := range x.out {
			if keep(e) {
				i := rep(x)
				v.adj[next[i]] = rep(e.to)
				next[i]++
			}
		}
	}
	return v
}

func (v *view) succ(i int) []int { return v.adj[v.off[i]:v.off[i+1]] }

// sort returns the vertex indices in topological order, or a *CycleError.
// It is Kahn's algorithm, sources first in insertion order; gonum's Tarjan
// is only run to name the cycles when some vertices are left over.
func (v *view) sort() ([]int, error) {
	indeg := make([]int, len(v.verts))
	for _, w := range v.adj {
		indeg[w]++
	}
	order := make([]int, 0, len(v.verts))
	for i, x := range v.verts {
		if x != nil && indeg[i] == 0 {
			order = append(order, i)
		}
	}
	for k := 0; k < len(order); k++ { // order is also the queue
		for _, w := range v.succ(order[k]) {
			if indeg[w]--; indeg[w] == 0 {
				order = append(order, w)
			}
		}
	}
	if len(order) < v.live {
		return nil, &CycleError{Cycles: v.cycles(topo.TarjanSCC(v.gonum()))}
	}
	return order, nil
}

// cycles turns the strongly connected components of more than one vertex
// and the self-loops into one concrete cycle each, ordered by first vertex.
func (v *view) cycles(sccs [][]graph.Node) [][]Vertex {
	comp := make([]int, len(v.verts)) // 1 + index of the vertex's component, 0 if none, -1 for a lone self-loop
	var starts []int
	for k, scc := range sccs {
		if len(scc) < 2 {
			continue
		}
		start := len(v.verts)
		for _, n := range scc {
			comp[n.ID()] = k + 1
			start = min(start, int(n.ID()))
		}
		starts = append(starts, start)
	}
	for i := range v.verts {
		if comp[i] == 0 && slices.Contains(v.succ(i), i) {
			comp[i] = -1 // a component of its own
			starts = append(starts, i)
		}
	}
	slices.Sort(starts)

	// The shortest cycle through start, by a breadth-first search that stays
	// inside its component; each search touches only its own component.
	parent := make([]int, len(v.verts))
	seen := make([]bool, len(v.verts))
	var cycles [][]Vertex
	for _, start := range starts {
		queue := []int{start}
		seen[start] = true
		last := -1
		for len(queue) > 0 && last < 0 {
			u := queue[0]
			queue = queue[1:]
			for _, w := range v.succ(u) {
				if w == start {
					last = u
					break
				}
				if !seen[w] && comp[w] == comp[start] && comp[w] > 0 {
					seen[w], parent[w] = true, u
					queue = append(queue, w)
				}
			}
		}
		var path []Vertex
		for u := last; u != start; u = parent[u] {
			path = append(path, v.verts[u])
		}
		path = append(path, v.verts[start])
		slices.Reverse(path)
		cycles = append(cycles, path)
	}
	return cycles
}

// TopologicalSort returns the vertices so that every edge points forward,
// or a *CycleError naming every cycle.
func (g *Graph) TopologicalSort() ([]Vertex, error) {
	v := g.view(nil, nil)
	order, err := v.sort()
	if err != nil {
		return nil, err
	}
	vs := make([]Vertex, len(order))
	for i, j := range order {
		vs[i] = v.verts[j]
	}
	return vs, nil
}

// Cycles returns one concrete cycle for each strongly connected component of
// more than one vertex and for each self-loop elsewhere, in path order.
func (g *Graph) Cycles() [][]Vertex {
	v := g.view(nil, nil)
	return v.cycles(topo.TarjanSCC(v.gonum()))
}

// Levels returns, for each vertex, the length of the longest path reaching
// it from a vertex without parents (those are at level 0), or a *CycleError.
func (g *Graph) Levels() (map[Vertex]int, error) {
	v := g.view(nil, nil)
	order, err := v.sort()
	if err != nil {
		return nil, err
	}
	level := make([]int, len(v.verts))
	levels := make(map[Vertex]int, len(order))
	for _, i := range order {
		for _, w := range v.succ(i) {
			level[w] = max(level[w], level[i]+1)
		}
		levels[v.verts[i]] = level[i]
	}
	return levels, nil
}

// Reachable reports whether there is a path from -> to; a vertex reaches
// itself.
func (g *Graph) Reachable(from, to Vertex) bool {
	f, t := g.nodes[from], g.nodes[to]
	if f == nil || t == nil {
		return false
	}
	seen := map[*node]bool{f: true}
	stack := []*node{f}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == t {
			return true
		}
		for _, e := range n.out {
			if !e.dead && !seen[e.to] {
				seen[e.to] = true
				stack = append(stack, e.to)
			}
		}
	}
	return false
}

// Contract replaces members by into: edges to or from a member now go to or
// from into (duplicates merged, Notify OR-ed) and edges among members are
// dropped. An edge leaving a member keeps the member's name in its Tails,
// one reaching a member in its Heads, so that what depends on one member,
// and what one member depends on, can still be told apart. into may be a member or a new vertex; an existing into that is
// not listed is contracted with them. If the result would have a cycle (any
// cycle, not only through into), Contract returns a wrapped *CycleError and
// leaves the graph unchanged.
func (g *Graph) Contract(members []Vertex, into Vertex) error {
	merge, err := g.mergeSet(members, into)
	if err != nil {
		return err
	}
	if _, err := g.view(merge, into).sort(); err != nil {
		return fmt.Errorf("contract into %s: %w", into, err)
	}
	g.contract(merge, into)
	return nil
}

// ContractAntichain is Contract without its cycle check, for members of
// which none reaches another (no path joins two of them, in either
// direction) in an acyclic graph: contracting them then makes no cycle,
// and the check, a walk of the whole graph, is left out. A caller that
// makes many groups (the engine's file grouping: one per directory) would
// otherwise pay O(V+E) for each; with 10,000 files in 100 directories the
// checks allocated 42 of the 77 MB a compile allocated. Whether members
// are an antichain is the caller's to know: nothing here verifies it.
func (g *Graph) ContractAntichain(members []Vertex, into Vertex) error {
	merge, err := g.mergeSet(members, into)
	if err != nil {
		return err
	}
	g.contract(merge, into)
	return nil
}

// mergeSet is the nodes of members and of into, if it is in the graph.
func (g *Graph) mergeSet(members []Vertex, into Vertex) (map[*node]bool, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("contract into %s: no members", into)
	}
	merge := make(map[*node]bool, len(members)+1)
	for _, m := range members {
		n := g.nodes[m]
		if n == nil {
			return nil, fmt.Errorf("contract into %s: member %s: %w", into, m, ErrNoVertex)
		}
		merge[n] = true
	}
	if n := g.nodes[into]; n != nil {
		merge[n] = true
	}
	return merge, nil
}

// contract does the contraction Contract describes, unchecked.
func (g *Graph) contract(merge map[*node]bool, into Vertex) {

	type redirect struct {
		from, to *node
		e        Edge
	}
	var moves []redirect
	var gone []*node
	in := g.node(into)
	for _, n := range g.order { // members in insertion order, for a deterministic result
		if !merge[n] {
			continue
		}
		for _, e := range n.in {
			if !e.dead && !merge[e.from] {
				ed := e.e
				if len(ed.Heads) == 0 {
					ed.Heads = []string{n.v.String()}
				}
				ed.Pairs = pairs(ed)
				moves = append(moves, redirect{e.from, in, ed})
			}
		}
		for _, e := range n.out {
			if !e.dead && !merge[e.to] {
				ed := e.e
				if len(ed.Tails) == 0 {
					ed.Tails = []string{n.v.String()}
				}
				ed.Pairs = pairs(ed)
				moves = append(moves, redirect{in, e.to, ed})
			}
		}
		if n != in {
			gone = append(gone, n)
		}
	}
	for _, n := range gone {
		g.DeleteVertex(n.v)
	}
	g.DeleteEdge(into, into)
	// Many members' edges become one edge (the 10,000 files of a directory:
	// one edge from the directory to their group). They are merged here
	// at once, in O(moves), where merging each into the edge as it stood
	// copied the lists every time: O(members²).
	type merged struct {
		redirect
		many         bool
		tails, heads union[string]
		pairs        union[[2]string]
	}
	var out []*merged
	byEnds := make(map[[2]*node]*merged, len(moves))
	for _, m := range moves {
		k := [2]*node{m.from, m.to}
		p := byEnds[k]
		if p == nil {
			p = &merged{redirect: m}
			byEnds[k] = p
			out = append(out, p)
			continue
		}
		if !p.many {
			p.many = true
			p.tails.add(p.e.Tails)
			p.heads.add(p.e.Heads)
			p.pairs.add(p.e.Pairs)
		}
		p.e.Notify = p.e.Notify || m.e.Notify
		p.tails.add(m.e.Tails)
		p.heads.add(m.e.Heads)
		p.pairs.add(m.e.Pairs)
	}
	for _, p := range out {
		if p.many {
			p.e.Tails, p.e.Heads, p.e.Pairs = p.tails.out, p.heads.out, p.pairs.out
		}
		g.addEdge(p.from, p.to, p.e)
	}
}

// union is unionTails over many lists, in O(their total length): empty
// (the whole vertex) wins, else the union in order of first appearance.
type union[T comparable] struct {
	whole bool
	out   []T
	seen  map[T]bool
}

func (u *union[T]) add(l []T) {
	if u.whole {
		return
	}
	if len(l) == 0 {
		u.whole, u.out, u.seen = true, nil, nil
		return
	}
	if u.seen == nil {
		u.seen = make(map[T]bool, len(l))
	}
	for _, t := range l {
		if !u.seen[t] {
			u.seen[t] = true
			u.out = append(u.out, t)
		}
	}
}

// pairs returns e's Pairs, or, for an edge that has just got both Tails
// and Heads (it joins two contractions) and that no merge has blurred (one
// of them is a single member), each tail with each head.
func pairs(e Edge) [][2]string {
	if len(e.Pairs) > 0 || len(e.Tails) == 0 || len(e.Heads) == 0 || (len(e.Tails) > 1 && len(e.Heads) > 1) {
		return e.Pairs
	}
	out := make([][2]string, 0, len(e.Tails)*len(e.Heads))
	for _, t := range e.Tails {
		for _, h := range e.Heads {
			out = append(out, [2]string{t, h})
		}
	}
	return out
}

// gview adapts a view to gonum's graph.Directed, for its topo package.
type gview struct {
	*view
	nodes []gnode
	all   []graph.Node // live vertices
	succ  []graph.Node // parallel to view.adj
}

type gnode struct{ id int64 }

func (n *gnode) ID() int64 { return n.id }

func (v *view) gonum() *gview {
	g := &gview{view: v, nodes: make([]gnode, len(v.verts)), succ: make([]graph.Node, len(v.adj))}
	for i := range g.nodes {
		g.nodes[i].id = int64(i)
		if v.verts[i] != nil {
			g.all = append(g.all, &g.nodes[i])
		}
	}
	for k, w := range v.adj {
		g.succ[k] = &g.nodes[w]
	}
	return g
}

func (g *gview) has(id int64) bool { return id >= 0 && id < int64(len(g.verts)) && g.verts[id] != nil }

func (g *gview) Node(id int64) graph.Node {
	if !g.has(id) {
		return nil
	}
	return &g.nodes[id]
}

func (g *gview) Nodes() graph.Nodes { return iterator.NewOrderedNodes(g.all) }

func (g *gview) From(id int64) graph.Nodes {
	if !g.has(id) {
		return graph.Empty
	}
	return iterator.NewOrderedNodes(g.succ[g.off[id]:g.off[id+1]])
}

// To scans every edge; gonum's topo functions do not call it.
func (g *gview) To(id int64) graph.Nodes {
	var to []graph.Node
	for i := range g.verts {
		if slices.Contains(g.view.succ(i), int(id)) {
			to = append(to, &g.nodes[i])
		}
	}
	return iterator.NewOrderedNodes(to)
}

func (g *gview) HasEdgeFromTo(uid, vid int64) bool {
	return g.has(uid) && slices.Contains(g.view.succ(int(uid)), int(vid))
}

func (g *gview) HasEdgeBetween(xid, yid int64) bool {
	return g.HasEdgeFromTo(xid, yid) || g.HasEdgeFromTo(yid, xid)
}

func (g *gview) Edge(uid, vid int64) graph.Edge {
	if !g.HasEdgeFromTo(uid, vid) {
		return nil
	}
	return simple.Edge{F: &g.nodes[uid], T: &g.nodes[vid]}
}
