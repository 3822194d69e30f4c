package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// A vertex with retry 0 whose delay is a year, and an event during its
// failing check: a run with a converged timeout still ends soon.
func TestLastChanceHugeDelayRunEnds(t *testing.T) {
	f := eventInCheck(func(int32) bool { return true })
	v := vtx("a", f)
	v.Meta.Retry, v.Meta.Delay = 0, MaxDelay
	start := time.Now()
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err == nil {
		t.Fatal("a vertex that always fails ended the run without an error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("run took %v", took)
	}
	if got := f.checks.Load(); got != 2 { // the extra check came, at 100 ms
		t.Fatalf("checked %d times, want 2", got)
	}
}

// A vertex removed by a reload while its extra check is armed is never
// checked again, is closed once, and leaves no goroutine.
func TestLastChanceTimerStoppedBySwap(t *testing.T) {
	leakcheck.Check(t, 5*time.Second)
	f := eventInCheck(func(int32) bool { return true })
	v := vtx("a", f)
	v.Meta.Retry, v.Meta.Delay = 0, 500
	other := &fake{}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := graphOf(t, []*Vertex{v, vtx("b", other)})
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	waitExtraCheckArmed(t, e, v)
	e.Swap(graphOf(t, []*Vertex{vtx("b", &fake{})}))
	wait.For(t, 5*time.Second, "a closed", func() bool { return f.closed.Load() == 1 })
	time.Sleep(800 * time.Millisecond)
	if got := f.checks.Load(); got != 1 {
		t.Fatalf("checked %d times after removal, want 1", got)
	}
	cancel()
	<-done
	if f.closed.Load() != 1 {
		t.Fatalf("closed %d times", f.closed.Load())
	}
}

// An event storm during the failing check earns one extra check, not one
// per event.
func TestLastChanceEventStorm(t *testing.T) {
	var n atomic.Int32
	var evs atomic.Pointer[Events]
	f := &fake{}
	f.watch = func(ctx context.Context, ev Events) error {
		evs.Store(&ev)
		ev.Running()
		<-ctx.Done()
		return nil
	}
	f.check = func(ctx context.Context, apply bool) (bool, error) {
		n.Add(1)
		ev := *evs.Load()
		for range 1000 {
			ev.Dirty()
		}
		return false, errors.New("fails")
	}
	v := vtx("a", f)
	v.Meta.Retry = 0
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err == nil {
		t.Fatal("no error")
	}
	if got := f.checks.Load(); got != 2 {
		t.Fatalf("checked %d times, want 2", got)
	}
}

// Noop mode: the same one extra check.
func TestLastChanceNoop(t *testing.T) {
	f := eventInCheck(func(i int32) bool { return i == 1 })
	v := vtx("a", f)
	v.Meta.Retry, v.Meta.Noop = 0, true
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err != nil {
		t.Fatal(err)
	}
	if got := f.checks.Load(); got != 2 || f.applied.Load() != 0 {
		t.Fatalf("checked %d times (applied %d), want 2 (0)", got, f.applied.Load())
	}
}

// While the extra check is pending, the run is not quiet, State shows the
// failure, and the vertex is not counted as given up.
func TestLastChanceStateWhilePending(t *testing.T) {
	f := eventInCheck(func(i int32) bool { return i == 1 })
	v := vtx("a", f)
	v.Meta.Retry, v.Meta.Delay = 0, 1000
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := graphOf(t, []*Vertex{v})
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	waitExtraCheckArmed(t, e, v)
	s := e.State()
	if s.Quiet || s.Converged || len(s.Failures) != 1 {
		t.Fatalf("state while the extra check is pending: %+v", s)
	}
	e.mu.Lock()
	gu := e.gaveUp
	e.mu.Unlock()
	if gu != 0 {
		t.Fatalf("gaveUp %d while the extra check is pending", gu)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// evGroup is a groupable fake whose group's first check fails member b
// while its watch reports an event; later checks succeed.
type evGroup struct {
	eventInCheckRes *fake
	names           []string
}

func (g *evGroup) Validate() error { return nil }
func (g *evGroup) Watch(ctx context.Context, ev Events) error {
	return g.eventInCheckRes.Watch(ctx, ev)
}
func (g *evGroup) CheckApply(ctx context.Context, apply bool) (bool, error) {
	return g.eventInCheckRes.CheckApply(ctx, apply)
}
func (g *evGroup) Close() error     { return g.eventInCheckRes.Close() }
func (g *evGroup) GroupKey() string { return "k" }
func (g *evGroup) Group(others []Res) (Res, error) {
	ng := &evGroup{names: append([]string(nil), g.names...)}
	for _, o := range others {
		ng.names = append(ng.names, o.(*evGroup).names...)
	}
	var n atomic.Int32
	inner := eventInCheck(func(i int32) bool { return i == 1 })
	check := inner.check
	inner.check = func(ctx context.Context, apply bool) (bool, error) {
		if n.Add(1) == 1 {
			_, err := check(ctx, apply) // the event comes during it
			return false, errors.Join(&MemberError{Res: "g[b]", Err: err})
		}
		return check(ctx, apply)
	}
	ng.eventInCheckRes = inner
	groupOf.Store(inner)
	return ng, nil
}

var groupOf atomic.Pointer[fake]

// A group member failing while the group's watch reports an event: the
// group gets its extra check and recovers.
func TestLastChanceGroupMember(t *testing.T) {
	var vs []*Vertex
	for _, n := range []string{"a", "b"} {
		v := &Vertex{Kind: "g", Name: n, Meta: DefaultMeta(), Res: &evGroup{eventInCheckRes: &fake{}, names: []string{n}}}
		v.Meta.Retry = 0
		vs = append(vs, v)
	}
	child := &fake{}
	vs = append(vs, &Vertex{Kind: "x", Name: "afterb", Meta: DefaultMeta(), Res: child})
	g := compile(t, vs, EdgeDecl{From: Ref{"g", "b"}, To: Ref{"x", "afterb"}})
	if err := runFor(t, g, 0); err != nil {
		t.Fatalf("the group's extra check should have succeeded: %v", err)
	}
	if got := groupOf.Load().checks.Load(); got != 2 {
		t.Fatalf("group checked %d times, want 2", got)
	}
	if child.checks.Load() < 1 {
		t.Fatal("what depends on b never ran")
	}
}

// waitExtraCheckArmed waits until v's one more check (for an event during
// its last failing check) is armed.
func waitExtraCheckArmed(t *testing.T, e *Engine, v *Vertex) {
	t.Helper()
	wait.For(t, 5*time.Second, "the extra check armed", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		n := e.nodes[key(v)]
		return n != nil && n.retrying && n.lastChance
	})
}
