// The race detector's instrumented frames do not fit in 2 KiB, so this
// test is built without it only: make test runs it in a run of its own
// without -race.

//go:build !race

package engine

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

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
