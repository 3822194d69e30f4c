package pgraph

import (
	"fmt"
	"testing"
)

var sizes = []int{1_000, 10_000, 100_000}

func vertices(n int) []Vertex {
	vs := make([]Vertex, n)
	for i := range vs {
		vs[i] = &tv{fmt.Sprintf("v%d", i)}
	}
	return vs
}

// chain is v0 -> v1 -> ... -> vn-1.
func chain(vs []Vertex) *Graph {
	g := New("chain")
	for i := 1; i < len(vs); i++ {
		g.AddEdge(vs[i-1], vs[i], &Edge{Name: "next"})
	}
	return g
}

// fan is v0 -> every other vertex.
func fan(vs []Vertex) *Graph {
	g := New("fan")
	for _, v := range vs[1:] {
		g.AddEdge(vs[0], v, &Edge{Name: "fan"})
	}
	return g
}

func BenchmarkBuildAndSort(b *testing.B) {
	for _, shape := range []struct {
		name  string
		build func([]Vertex) *Graph
	}{{"chain", chain}, {"fan", fan}} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", shape.name, n), func(b *testing.B) {
				vs := vertices(n)
				for b.Loop() {
					order, err := shape.build(vs).TopologicalSort()
					if err != nil || len(order) != n {
						b.Fatalf("sort: %d vertices, %v", len(order), err)
					}
				}
			})
		}
	}
}

func BenchmarkLevels(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			g := randomDAG(n, n, 1)
			for b.Loop() {
				if _, err := g.Levels(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkContract contracts the n/10 middles of root -> middle_i -> leaf_i
// paths into one vertex, as grouping would.
func BenchmarkContract(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			vs := vertices(n)
			g := New("paths")
			var members []Vertex
			for i := 1; i+1 < n; i += 2 {
				g.AddEdge(vs[0], vs[i], nil)
				g.AddEdge(vs[i], vs[i+1], nil)
				if len(members) < n/10 {
					members = append(members, vs[i])
				}
			}
			into := &tv{"group"}
			for b.Loop() {
				b.StopTimer()
				c := g.Copy()
				b.StartTimer()
				if err := c.Contract(members, into); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
