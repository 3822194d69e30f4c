package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// fake is a resource whose behaviour the test sets through function fields.
type fake struct {
	check   func(ctx context.Context, apply bool) (bool, error)
	watch   func(ctx context.Context, ev Events) error
	refresh func(ctx context.Context) (bool, error)
	closed  atomic.Int32
	checks  atomic.Int32
	applied atomic.Int32 // CheckApply calls with apply=true
}

func (f *fake) Validate() error { return nil }
func (f *fake) Watch(ctx context.Context, ev Events) error {
	if f.watch != nil {
		return f.watch(ctx, ev)
	}
	ev.Running()
	<-ctx.Done()
	return nil
}
func (f *fake) CheckApply(ctx context.Context, apply bool) (bool, error) {
	f.checks.Add(1)
	if apply {
		f.applied.Add(1)
	}
	if f.check != nil {
		return f.check(ctx, apply)
	}
	return false, nil
}
func (f *fake) Close() error { f.closed.Add(1); return nil }

type refreshFake struct{ *fake }

func (r refreshFake) Refresh(ctx context.Context) (bool, error) { return r.fake.refresh(ctx) }

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func vtx(name string, r Res) *Vertex {
	return &Vertex{Kind: "fake", Name: name, Meta: DefaultMeta(), Res: r}
}

// graphOf builds a graph from vertices and edges "a>b" (">>" for notify).
func graphOf(t *testing.T, vs []*Vertex, edges ...[2]string) *Graph {
	t.Helper()
	d := &Decl{Name: "test", Vertices: vs}
	for _, e := range edges {
		d.Edges = append(d.Edges, EdgeDecl{From: Ref{"fake", e[0]}, To: Ref{"fake", e[1]}})
	}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func runFor(t *testing.T, g *Graph, timeout time.Duration) error {
	t.Helper()
	e := New(Config{Logger: quietLog(), ConvergedTimeout: timeout})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := e.Run(ctx, g)
	if ctx.Err() != nil {
		t.Fatalf("run did not end by itself: %v", err)
	}
	return err
}

func TestOrderFollowsEdges(t *testing.T) {
	var mu sync.Mutex
	var order []string
	rec := func(name string) *fake {
		return &fake{check: func(context.Context, bool) (bool, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return true, nil
		}}
	}
	a, b, c := rec("a"), rec("b"), rec("c")
	g := graphOf(t, []*Vertex{vtx("c", c), vtx("b", b), vtx("a", a)}, [2]string{"a", "b"}, [2]string{"b", "c"})
	if err := runFor(t, g, 0); err != nil {
		t.Fatal(err)
	}
	// a changed, so b was checked again after it, and c after b; the first
	// time each ran, its parents had already run.
	pos := map[string]int{}
	for i, n := range order {
		if _, ok := pos[n]; !ok {
			pos[n] = i
		}
	}
	if !(pos["a"] < pos["b"] && pos["b"] < pos["c"]) {
		t.Fatalf("order %v does not follow a->b->c", order)
	}
	for _, f := range []*fake{a, b, c} {
		if f.closed.Load() != 1 {
			t.Fatalf("Close called %d times, want 1", f.closed.Load())
		}
	}
}

func TestIndependentBranchesRunInParallel(t *testing.T) {
	var cur, peak atomic.Int32
	release := make(chan struct{})
	slow := func() *fake {
		return &fake{check: func(ctx context.Context, _ bool) (bool, error) {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			if n == 4 {
				close(release)
			}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			cur.Add(-1)
			return false, nil
		}}
	}
	g := graphOf(t, []*Vertex{vtx("a", slow()), vtx("b", slow()), vtx("c", slow()), vtx("d", slow())})
	if err := runFor(t, g, 0); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 4 {
		t.Fatalf("at most %d of 4 independent vertices ran at once, want 4", peak.Load())
	}
}

func TestFailureHoldsBackOnlyDependents(t *testing.T) {
	boom := errors.New("boom")
	bad := &fake{check: func(context.Context, bool) (bool, error) { return false, boom }}
	child := &fake{}
	other := &fake{}
	g := graphOf(t, []*Vertex{vtx("bad", bad), vtx("child", child), vtx("other", other)}, [2]string{"bad", "child"})
	err := runFor(t, g, 50*time.Millisecond)
	var re *RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].Res != "fake[bad]" || !errors.Is(re.Failures[0].Err, boom) {
		t.Fatalf("want a RunError naming fake[bad], got %v", err)
	}
	if child.checks.Load() != 0 {
		t.Fatal("the child of a failed vertex was checked")
	}
	if other.checks.Load() != 1 {
		t.Fatalf("the independent vertex was checked %d times, want 1", other.checks.Load())
	}
}

func TestPanicFailsOnlyItsVertex(t *testing.T) {
	bad := &fake{check: func(context.Context, bool) (bool, error) { panic("kaboom") }}
	other := &fake{}
	err := runFor(t, graphOf(t, []*Vertex{vtx("bad", bad), vtx("other", other)}), 0)
	var re *RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].Res != "fake[bad]" {
		t.Fatalf("want a RunError naming fake[bad], got %v", err)
	}
	if other.checks.Load() != 1 {
		t.Fatal("the other vertex did not run")
	}
}

func TestRetryThenSucceed(t *testing.T) {
	var n atomic.Int32
	flaky := &fake{check: func(context.Context, bool) (bool, error) {
		if n.Add(1) <= 2 {
			return false, errors.New("not yet")
		}
		return true, nil
	}}
	v := vtx("flaky", flaky)
	v.Meta.Retry, v.Meta.Delay = 2, 10
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err != nil {
		t.Fatalf("want success after two retries, got %v", err)
	}
	if got := flaky.checks.Load(); got != 3 {
		t.Fatalf("checked %d times, want 3", got)
	}
}

func TestConvergedTimeoutWaits(t *testing.T) {
	g := graphOf(t, []*Vertex{vtx("a", &fake{})})
	start := time.Now()
	if err := runFor(t, g, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("run ended after %v, before the converged timeout of 300ms", d)
	}
}

// A drift reported by Watch makes the vertex check again, and its change
// reaches its child (refreshed over a notify edge).
func TestDriftRechecksAndNotifies(t *testing.T) {
	drift := make(chan struct{})
	var changes atomic.Int32
	parent := &fake{
		watch: func(ctx context.Context, ev Events) error {
			ev.Running()
			select {
			case <-drift:
				changes.Store(1)
				ev.Dirty()
			case <-ctx.Done():
			}
			<-ctx.Done()
			return nil
		},
		check: func(context.Context, bool) (bool, error) { return changes.Swap(0) == 1, nil },
	}
	refreshed := make(chan struct{}, 10)
	child := refreshFake{&fake{refresh: func(context.Context) (bool, error) {
		refreshed <- struct{}{}
		return true, nil
	}}}
	d := &Decl{Name: "t", Vertices: []*Vertex{vtx("p", parent), vtx("c", child)},
		Edges: []EdgeDecl{{From: Ref{"fake", "p"}, To: Ref{"fake", "c"}, Notify: true}}}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	wait.For(t, 5*time.Second, "the child's first check", func() bool { return child.checks.Load() == 1 })
	close(drift)
	select {
	case <-refreshed:
	case <-time.After(5 * time.Second):
		t.Fatal("child not refreshed after the parent changed")
	}
	wait.For(t, 5*time.Second, "a second check of parent and child", func() bool { return parent.checks.Load() == 2 && child.checks.Load() == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(refreshed) != 0 {
		t.Fatalf("%d extra refreshes", len(refreshed))
	}
}

func TestSwapKeepsUnchangedVertices(t *testing.T) {
	keep, drop := &fake{}, &fake{}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, graphOf(t, []*Vertex{vtx("keep", keep), vtx("drop", drop)})) }()
	wait.For(t, 5*time.Second, "the first checks of keep and drop", func() bool { return keep.checks.Load() == 1 && drop.checks.Load() == 1 })

	added := &fake{}
	keep2 := &fake{} // same kind, name and hash: the running one stays
	e.Swap(graphOf(t, []*Vertex{vtx("keep", keep2), vtx("added", added)}))
	wait.For(t, 5*time.Second, "the added vertex's first check", func() bool { return added.checks.Load() == 1 })
	if drop.closed.Load() != 1 {
		t.Fatal("the removed vertex was not closed")
	}
	if keep.checks.Load() != 1 || keep.closed.Load() != 0 || keep2.checks.Load() != 0 {
		t.Fatalf("the unchanged vertex was disturbed: checks %d closed %d; its replacement ran %d times",
			keep.checks.Load(), keep.closed.Load(), keep2.checks.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNoopChangesNothing(t *testing.T) {
	f := &fake{check: func(_ context.Context, apply bool) (bool, error) { return true, nil }}
	v := vtx("a", f)
	v.Meta.Noop = true
	if err := runFor(t, graphOf(t, []*Vertex{v}), 0); err != nil {
		t.Fatal(err)
	}
	if f.checks.Load() != 1 || f.applied.Load() != 0 {
		t.Fatalf("noop: %d checks, %d with apply; want 1 and 0", f.checks.Load(), f.applied.Load())
	}
}

func TestSemaphoreLimitsConcurrency(t *testing.T) {
	var cur, peak atomic.Int32
	mk := func(name string) *Vertex {
		v := vtx(name, &fake{check: func(context.Context, bool) (bool, error) {
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			cur.Add(-1)
			return false, nil
		}})
		v.Meta.Sema = []string{"lock:1"}
		return v
	}
	if err := runFor(t, graphOf(t, []*Vertex{mk("a"), mk("b"), mk("c")}), 0); err != nil {
		t.Fatal(err)
	}
	if peak.Load() != 1 {
		t.Fatalf("%d ran at once under sema lock:1", peak.Load())
	}
}

func TestCycleIsRefusedWithNames(t *testing.T) {
	d := &Decl{Name: "t", Vertices: []*Vertex{vtx("a", &fake{}), vtx("b", &fake{})},
		Edges: []EdgeDecl{{From: Ref{"fake", "a"}, To: Ref{"fake", "b"}}, {From: Ref{"fake", "b"}, To: Ref{"fake", "a"}}}}
	_, err := Compile(context.Background(), d, quietLog())
	if err == nil {
		t.Fatal("a cycle was accepted")
	}
	if got := err.Error(); !strings.Contains(got, "fake[a]") || !strings.Contains(got, "fake[b]") {
		t.Fatalf("error does not name the cycle: %s", got)
	}
}

// Stopping a run of 10,000 vertices closes every resource and leaves no
// goroutine behind.
func TestShutdownLeavesNothing(t *testing.T) {
	before := leakcheck.Take()
	var vs []*Vertex
	var fakes []*fake
	for i := 0; i < 10000; i++ {
		f := &fake{}
		fakes = append(fakes, f)
		vs = append(vs, vtx(strconv.Itoa(i), f))
	}
	g := graphOf(t, vs)
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	// Generous: the race detector on a busy machine is slow to start 10,000.
	wait.For(t, 2*time.Minute, "10,000 vertices converged", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.converged == len(vs)
	})
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 vertices stopped in %v", time.Since(start))
	for i, f := range fakes {
		if f.closed.Load() != 1 {
			t.Fatalf("vertex %d closed %d times", i, f.closed.Load())
		}
	}
	if left := before.Left(30 * time.Second); len(left) > 0 {
		t.Fatalf("%d goroutines left after the run:\n%s", len(left), strings.Join(left[:min(len(left), 5)], "\n\n"))
	}
}

// A check that ignores its context and hangs is left behind once its meta
// timeout (and a grace period) has passed: its vertex fails, the rest of
// the graph converges, and the run ends.
func TestHangingCheckIgnoringContext(t *testing.T) {
	old := stuckGrace
	stuckGrace = 100 * time.Millisecond
	defer func() { stuckGrace = old }()
	release := make(chan struct{})
	defer close(release)
	hang := vtx("hang", &fake{check: func(context.Context, bool) (bool, error) {
		<-release // ignores ctx on purpose
		return false, nil
	}})
	hang.Meta.Timeout = 1
	other := &fake{}
	err := runFor(t, graphOf(t, []*Vertex{hang, vtx("other", other)}), 0)
	var re *RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].Res != "fake[hang]" ||
		!strings.Contains(re.Failures[0].Err.Error(), "did not stop") {
		t.Fatalf("want a RunError naming fake[hang] as stuck, got %v", err)
	}
	if other.checks.Load() != 1 {
		t.Fatal("the independent vertex did not converge")
	}
}

// A Swap that comes before Run (a reload racing the start) is not lost and
// does not crash: Run starts the newer graph.
func TestSwapBeforeRun(t *testing.T) {
	old, newer := &fake{}, &fake{}
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	e.Swap(graphOf(t, []*Vertex{vtx("newer", newer)}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx, graphOf(t, []*Vertex{vtx("old", old)})); err != nil {
		t.Fatal(err)
	}
	if newer.checks.Load() != 1 || old.checks.Load() != 0 {
		t.Fatalf("newer checked %d times, old %d; want 1 and 0", newer.checks.Load(), old.checks.Load())
	}
}

// A Swap racing Run's start (before, during or after it) always wins over
// Run's own graph, and of two Swaps in a row the second wins. Once 31 and
// 42 runs in 300 ended with the older graph running.
func TestSwapRacesRun(t *testing.T) {
	const runs = 300
	for i := range runs {
		old, mid, newest := &fake{}, &fake{}, &fake{}
		e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
		gOld := graphOf(t, []*Vertex{vtx("old", old)})
		gMid := graphOf(t, []*Vertex{vtx("mid", mid)})
		gNew := graphOf(t, []*Vertex{vtx("newest", newest)})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		done := make(chan error, 1)
		swapped := make(chan struct{})
		go func() {
			if i%2 == 0 {
				e.Swap(gMid)
			}
			e.Swap(gNew)
			close(swapped)
		}()
		go func() { done <- e.Run(ctx, gOld) }()
		<-swapped
		for newest.checks.Load() == 0 && ctx.Err() == nil {
			runtime.Gosched()
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		assertTally(t, e)
		for _, r := range e.Reports() {
			if r.Res != "fake[newest]" && !r.Removed || r.Res == "fake[newest]" && r.Removed {
				t.Fatalf("run %d: the newest graph is not the one running at the end: %+v", i, e.Reports())
			}
		}
		if newest.checks.Load() == 0 {
			t.Fatalf("run %d: the newest graph never ran", i)
		}
	}
}
