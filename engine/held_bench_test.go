package engine

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// benchHolder is a group of many members that checks those HeldBack does
// not name and changes nothing.
type benchHolder struct {
	noopRes
	names []string
}

func (h *benchHolder) HoldsBackMembers() {}
func (h *benchHolder) GroupKey() string  { return "k" }
func (h *benchHolder) Group(others []Res) (Res, error) {
	g := &benchHolder{names: append([]string(nil), h.names...)}
	for _, o := range others {
		g.names = append(g.names, o.(*benchHolder).names...)
	}
	return g, nil
}

type failRes struct{ noopRes }

func (failRes) CheckApply(context.Context, bool) (bool, error) { return false, errors.New("boom") }

// heldGraph: a group of members vertices, the first 100 of which depend
// on a failed resource, and a child of each of the first 1,000.
func heldGraph(b *testing.B, members int) *Engine {
	d := &Decl{Name: "held", Vertices: []*Vertex{{Kind: "x", Name: "bad", Meta: DefaultMeta(), Res: failRes{}}}}
	for i := range members {
		name := strconv.Itoa(i)
		d.Vertices = append(d.Vertices, &Vertex{Kind: "m", Name: name, Meta: DefaultMeta(), Res: &benchHolder{names: []string{"m[" + name + "]"}}})
		if i < 100 {
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"x", "bad"}, To: Ref{"m", name}})
		}
		if i < 1000 {
			d.Vertices = append(d.Vertices, &Vertex{Kind: "c", Name: name, Meta: DefaultMeta(), Res: noopRes{}})
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"m", name}, To: Ref{"c", name}})
		}
	}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Run(ctx, g); err == nil || ctx.Err() != nil {
		b.Fatalf("run: %v (%v), want x[bad]'s failure", err, ctx.Err())
	}
	if held := e.State().Held; held != 200 {
		b.Fatalf("%d held, want 200", held)
	}
	return e
}

// BenchmarkStateHeld: a host status's State of an engine that holds back
// 100 members of a group of 10,000 and 100 of 1,000 vertices after them.
func BenchmarkStateHeld(b *testing.B) {
	e := heldGraph(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		e.State()
	}
}

// BenchmarkReportsHeld: the run report's resources, of the same engine.
func BenchmarkReportsHeld(b *testing.B) {
	e := heldGraph(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		e.Reports()
	}
}
