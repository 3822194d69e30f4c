package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// State says converged, failed-and-quiet, and working, as they are at
// the moment, not as the tracker last saw them: right after a swap the
// new vertex's pending check makes the graph not quiet.
func TestState(t *testing.T) {
	release := make(chan struct{})
	ok := vtx("ok", &fake{})
	bad := vtx("bad", &fake{check: func(context.Context, bool) (bool, error) { return false, errors.New("boom") }})
	slow := vtx("slow", &fake{check: func(ctx context.Context, _ bool) (bool, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return false, nil
	}})
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, graphOf(t, []*Vertex{ok, bad})) }()
	defer func() { cancel(); <-done }()

	wait.For(t, 5*time.Second, "quiet with bad failed", func() bool { s := e.State(); return s.Quiet && !s.Converged })
	s := e.State()
	if len(s.Failures) != 1 || s.Failures[0].Res != "fake[bad]" || s.Failures[0].Err.Error() != "boom" {
		t.Fatalf("failures %+v: want fake[bad]: boom", s.Failures)
	}
	e.Swap(graphOf(t, []*Vertex{ok}))
	wait.For(t, 5*time.Second, "converged without bad", func() bool { s := e.State(); return s.Converged && len(s.Failures) == 0 })
	e.Swap(graphOf(t, []*Vertex{ok, slow}))
	if s := e.State(); s.Quiet || s.Converged {
		t.Errorf("just after a swap with a check under way: %+v: want neither quiet nor converged", s)
	}
	close(release)
	wait.For(t, 5*time.Second, "converged with slow", func() bool { return e.State().Converged })
}
