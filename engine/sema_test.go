package engine

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
)

// barrier is a check-and-apply that returns once n of them are inside at
// once (all is closed then), or when its context ends.
func barrier(n int) (check func(context.Context, bool) (bool, error), all chan struct{}) {
	var mu sync.Mutex
	in := 0
	all = make(chan struct{})
	return func(ctx context.Context, _ bool) (bool, error) {
		mu.Lock()
		if in++; in == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}, all
}

// A reload that raises a semaphore's count takes effect: the count was
// fixed by the name's first use for the life of the engine.
func TestSemaCountFollowsTheGraph(t *testing.T) {
	first := vtx("first", &fake{})
	first.Meta.Sema = []string{"x:1"}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, graphOf(t, []*Vertex{first})) }()
	for first.Res.(*fake).checks.Load() == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond) // polling a condition, not for correctness
	}
	check, met := barrier(3)
	var vs []*Vertex
	for i := range 3 {
		v := vtx("b"+strconv.Itoa(i), &fake{check: check})
		v.Meta.Sema = []string{"x:3"}
		vs = append(vs, v)
	}
	e.Swap(graphOf(t, vs))
	// With the count of the name's first use (1), the three never meet.
	select {
	case <-met:
	case <-time.After(5 * time.Second):
		t.Error("the three x:3 resources did not run at once after the reload")
	}
	cancel()
	<-done
}
