package engine

import (
	"io"

	"github.com/mgmtconfig/mgmt/pgraph"
)

// Graph is a compiled graph, the engine's input: resources with their
// identities, in an order that respects every edge. Only Compile makes one,
// and it does not change afterwards, so the engine never meets a vertex
// that is not a resource or an identity a front end computed.
type Graph struct {
	g     *pgraph.Graph
	order []*Vertex      // topological
	semas map[string]int // the count of each semaphore name
}

// Name is the graph's name, as declared.
func (g *Graph) Name() string { return g.g.Name }

// Vertices lists the vertices in insertion order.
func (g *Graph) Vertices() []*Vertex { return vertices(g.g.Vertices()) }

// Order lists the vertices so that every parent comes before its children.
func (g *Graph) Order() []*Vertex { return g.order }

// Parents lists the vertices with an edge to v.
func (g *Graph) Parents(v *Vertex) []*Vertex { return vertices(g.g.Parents(v)) }

// Children lists the vertices v has an edge to.
func (g *Graph) Children(v *Vertex) []*Vertex { return vertices(g.g.Children(v)) }

// Edge returns the edge from -> to, if there is one.
func (g *Graph) Edge(from, to *Vertex) (*pgraph.Edge, bool) { return g.g.Edge(from, to) }

// NumVertices is the number of vertices.
func (g *Graph) NumVertices() int { return g.g.NumVertices() }

// NumEdges is the number of edges.
func (g *Graph) NumEdges() int { return g.g.NumEdges() }

// String lists the vertices and edges, sorted (golden tests).
func (g *Graph) String() string { return g.g.String() }

// WriteDOT writes the graph in Graphviz's DOT language.
func (g *Graph) WriteDOT(w io.Writer) error { return g.g.WriteDOT(w) }

// vertices converts what pgraph holds; every vertex of an engine graph is
// a *Vertex, put there by this package.
func vertices(pvs []pgraph.Vertex) []*Vertex {
	out := make([]*Vertex, len(pvs))
	for i, pv := range pvs {
		out[i] = pv.(*Vertex)
	}
	return out
}
