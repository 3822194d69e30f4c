package engine

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// noopRes is the noop kind's behaviour, without importing it.
type noopRes struct{}

func (noopRes) Validate() error { return nil }
func (noopRes) Watch(ctx context.Context, ev Events) error {
	ev.Running()
	<-ctx.Done()
	return nil
}
func (noopRes) CheckApply(context.Context, bool) (bool, error) { return false, nil }
func (noopRes) Close() error                                   { return nil }

func benchGraph(b *testing.B, n int, shape string) *Graph {
	d := &Decl{Name: shape}
	for i := 0; i < n; i++ {
		name := strconv.Itoa(i)
		d.Vertices = append(d.Vertices, &Vertex{Kind: "noop", Name: name, Meta: DefaultMeta(), Res: noopRes{}})
		switch {
		case i == 0:
		case shape == "chain":
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"noop", strconv.Itoa(i - 1)}, To: Ref{"noop", name}})
		case shape == "fan":
			d.Edges = append(d.Edges, EdgeDecl{From: Ref{"noop", "0"}, To: Ref{"noop", name}})
		}
	}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// BenchmarkConverge: time for a graph of noop vertices to converge (and
// stop), and the memory in use when it has converged.
func BenchmarkConverge(b *testing.B) {
	sizes := []int{1000, 10000, 100000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, shape := range []string{"chain", "fan", "flat"} {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", shape, n), func(b *testing.B) {
				var peak uint64
				var conv time.Duration
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					g := benchGraph(b, n, shape)
					runtime.GC()
					var before runtime.MemStats
					runtime.ReadMemStats(&before)
					e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan error, 1)
					b.StartTimer()
					start := time.Now()
					go func() { done <- e.Run(ctx, g) }()
					for {
						e.mu.Lock()
						ok := e.quiet && e.converged == len(e.nodes) && len(e.nodes) == n
						e.mu.Unlock()
						if ok {
							break
						}
						time.Sleep(100 * time.Microsecond)
					}
					conv += time.Since(start)
					var at runtime.MemStats
					runtime.GC() // live memory: what a converged graph holds
					runtime.ReadMemStats(&at)
					if used := at.HeapInuse + at.StackInuse - before.HeapInuse - before.StackInuse; used > peak {
						peak = used
					}
					cancel()
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(conv.Milliseconds())/float64(b.N), "ms-to-converge")
				b.ReportMetric(float64(peak)/(1<<20), "MB-at-converged")
			})
		}
	}
}
