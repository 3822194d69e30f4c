package engine

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// bigHeldGraph runs a graph of n vertices after a root, a chain of them
// or all children of the root, and returns its engine once quiet; the
// root fails when fail says so.
func bigHeldGraph(b *testing.B, n int, chain, fail bool) *Engine {
	var root Res = noopRes{}
	if fail {
		root = failRes{}
	}
	d := &Decl{Name: "big", Vertices: []*Vertex{{Kind: "x", Name: "root", Meta: DefaultMeta(), Res: root}}}
	prev := Ref{"x", "root"}
	for i := range n {
		ref := Ref{"c", strconv.Itoa(i)}
		d.Vertices = append(d.Vertices, &Vertex{Kind: ref.Kind, Name: ref.Name, Meta: DefaultMeta(), Res: noopRes{}})
		d.Edges = append(d.Edges, EdgeDecl{From: prev, To: ref})
		if chain {
			prev = ref
		}
	}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := e.Run(ctx, g); (err != nil) != fail || ctx.Err() != nil {
		b.Fatalf("run: %v (%v), want a failure: %v", err, ctx.Err(), fail)
	}
	if held, want := e.State().Held, n*btoi(fail); held != want {
		b.Fatalf("%d held, want %d", held, want)
	}
	return e
}

// BenchmarkStateHeldBig: State of an engine of 100,000 vertices after one
// root, in a chain or each a child of it, the root failed (held) or not
// (the baseline: nothing held, nothing to walk).
func BenchmarkStateHeldBig(b *testing.B) {
	for _, c := range []struct {
		name        string
		chain, fail bool
	}{{"chain/ok", true, false}, {"chain/held", true, true}, {"fan/ok", false, false}, {"fan/held", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			e := bigHeldGraph(b, 100000, c.chain, c.fail)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				e.State()
			}
		})
	}
}
