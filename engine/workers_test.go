package engine

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// A first pass over many vertices runs on a bounded set of workers: before
// the bound, 2,000 vertices had 2,000 worker goroutines at once beside their
// 2,000 watchers, each with a stack of 4 to 8 KiB.
func TestFirstPassBoundsWorkers(t *testing.T) {
	const n = 2000
	var peak atomic.Int64
	var vs []*Vertex
	for i := range n {
		vs = append(vs, vtx(fmt.Sprint(i), &fake{check: func(context.Context, bool) (bool, error) {
			g := int64(runtime.NumGoroutine())
			for p := peak.Load(); g > p && !peak.CompareAndSwap(p, g); p = peak.Load() {
			}
			return false, nil
		}}))
	}
	base := int64(runtime.NumGoroutine())
	if err := runFor(t, graphOf(t, vs), 0); err != nil {
		t.Fatal(err)
	}
	// n watchers, maxWorkers workers, and room for checks that lost
	// their slot while descheduled on a loaded machine.
	if limit := base + n + n/4; peak.Load() > limit {
		t.Fatalf("%d goroutines during the first pass of %d vertices, want at most %d", peak.Load(), n, limit)
	}
}

// Checks that block do not hold a slot: more than maxWorkers of them still
// run at once (a graph of slow commands keeps its parallelism).
func TestBlockedChecksRunInParallel(t *testing.T) {
	const n = 3 * maxWorkers
	var in atomic.Int32
	all := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var vs []*Vertex
	for i := range n {
		vs = append(vs, vtx(fmt.Sprint(i), &fake{check: func(context.Context, bool) (bool, error) {
			if in.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
				return false, nil
			case <-ctx.Done():
				return false, fmt.Errorf("only %d of %d blocked checks ran at once", in.Load(), n)
			}
		}}))
	}
	if err := runFor(t, graphOf(t, vs), 0); err != nil {
		t.Fatal(err)
	}
}

// stackBytes is the memory in goroutine stacks now.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// An idle vertex (converged, its watcher blocked in Watch) keeps the
// smallest stack Go gives a goroutine, 2 KiB: the engine's frames under a
// resource's Watch leave room for it. They took 4 KiB before, 40 MB for
// 10,000 noop vertices.
func TestIdleVertexStack(t *testing.T) {
	const n = 2000
	var vs []*Vertex
	for i := range n {
		vs = append(vs, vtx(fmt.Sprint(i), &fake{})) // Running, then <-ctx.Done(), as noop does
	}
	g := graphOf(t, vs)
	runtime.GC()
	before := stackBytes()
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	wait.For(t, 20*time.Second, "converged", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.converged == n && e.workers == 0
	})
	per := float64(stackBytes()-before) / n
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%.0f bytes of stack per idle vertex", per)
	if per > 3000 {
		t.Fatalf("%.0f bytes of stack per idle vertex, want 2 KiB", per)
	}
}
