package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// eventInCheck is a fake whose watch reports an event while its check is
// under way, for the checks that fail(i) says fail (i counts from 1).
func eventInCheck(fail func(i int32) bool) *fake {
	kick, kicked := make(chan struct{}), make(chan struct{})
	var n atomic.Int32
	f := &fake{}
	f.watch = func(ctx context.Context, ev Events) error {
		ev.Running()
		for {
			select {
			case <-kick:
				ev.Dirty()
				kicked <- struct{}{}
			case <-ctx.Done():
				return nil
			}
		}
	}
	f.check = func(ctx context.Context, apply bool) (bool, error) {
		i := n.Add(1)
		if !fail(i) {
			return false, nil
		}
		select { // the event comes before the check returns
		case kick <- struct{}{}:
			<-kicked
		case <-ctx.Done():
		}
		return false, errors.New("failed while the world changed")
	}
	return f
}

// A vertex with no retries left whose failing check saw an event of its own
// watch (the world changed under it) is checked once more; the change it
// was failing on is then found gone.
func TestEventDuringLastFailingCheck(t *testing.T) {
	f := eventInCheck(func(i int32) bool { return i == 1 })
	v := vtx("a", f)
	v.Meta.Retry = 0
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err != nil {
		t.Fatalf("the check after the event should have succeeded: %v", err)
	}
	if got := f.checks.Load(); got != 2 {
		t.Fatalf("checked %d times, want 2", got)
	}
}

// A resource whose every failing check signals an event of its own (a
// service whose failed start changes its state) gets that one more check
// once, then gives up: no loop.
func TestEventDuringEveryFailingCheckGivesUp(t *testing.T) {
	f := eventInCheck(func(int32) bool { return true })
	v := vtx("a", f)
	v.Meta.Retry = 1
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err == nil {
		t.Fatal("a vertex that always fails ended the run without an error")
	}
	// the first check, its one retry, and one more for the event
	if got := f.checks.Load(); got != 3 {
		t.Fatalf("checked %d times, want 3", got)
	}
}
