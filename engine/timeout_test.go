package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// A check that hangs until its context ends is failed by meta timeout; a
// vertex that does not depend on it converges meanwhile, and the run ends
// by itself with a RunError naming only the hanging vertex.
func TestTimeoutFailsHangingCheckOnly(t *testing.T) {
	entered := make(chan struct{}, 1)
	hang := &fake{check: func(ctx context.Context, _ bool) (bool, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return false, ctx.Err()
	}}
	other := &fake{check: func(context.Context, bool) (bool, error) { return true, nil }}
	hv := vtx("hang", hang)
	hv.Meta.Timeout = 1
	g := graphOf(t, []*Vertex{hv, vtx("other", other)})

	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- e.Run(ctx, g) }()

	// While the hanging check is under way, the other vertex converges.
	<-entered
	wait.For(t, 5*time.Second, "the other vertex's first check", func() bool { return other.checks.Load() == 1 })
	e.mu.Lock()
	otherOK := false
	for _, n := range e.nodes {
		if n.v.Name == "other" {
			otherOK = n.st == stateOK
		}
	}
	e.mu.Unlock()
	if !otherOK {
		t.Fatal("the independent vertex was not in its desired state while the other hung")
	}

	err := <-done
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the run did not end by itself: %v", err)
	}
	var re *RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 {
		t.Fatalf("want a RunError with one failure, got %v", err)
	}
	f := re.Failures[0]
	if f.Res != "fake[hang]" {
		t.Fatalf("failure names %s, want fake[hang]", f.Res)
	}
	if !errors.Is(f.Err, context.DeadlineExceeded) || !strings.Contains(f.Err.Error(), "meta timeout") || !strings.Contains(f.Err.Error(), "1s") {
		t.Fatalf("failure %q does not say it timed out after 1s (meta timeout)", f.Err)
	}
	if took < time.Second {
		t.Fatalf("the run ended after %v, before the 1 s time limit", took)
	}
	if hang.checks.Load() != 1 || other.checks.Load() != 1 {
		t.Fatalf("checks: hang %d, other %d; want 1 each (no retries)", hang.checks.Load(), other.checks.Load())
	}
	for _, r := range e.Reports() {
		switch r.Res {
		case "fake[hang]":
			if !r.Failed || r.Failures != 1 || r.Duration < time.Second {
				t.Fatalf("report of the hanging vertex: %+v", r)
			}
		case "fake[other]":
			if r.Failed || !r.Changed {
				t.Fatalf("report of the other vertex: %+v", r)
			}
		}
	}
	if hang.closed.Load() != 1 || other.closed.Load() != 1 {
		t.Fatal("a vertex was not closed")
	}
}
