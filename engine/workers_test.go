package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
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
