package engine

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// A chain of 10,000 after a failed root: every vertex of it is held, by
// the root alone (the walk follows the chain in topological order, with
// no recursion).
func TestReportHeldDeepChain(t *testing.T) {
	const n = 10000
	vs := []*Vertex{vtx("root", failing())}
	var edges [][2]string
	prev := "root"
	want := map[string][]string{}
	for i := range n {
		name := strconv.Itoa(i)
		vs = append(vs, vtx(name, &fake{}))
		edges = append(edges, [2]string{prev, name})
		want["fake["+name+"]"] = []string{"fake[root]"}
		prev = name
	}
	reps, held := heldReports(t, graphOf(t, vs, edges...))
	checkHeld(t, reps, held, want)
}

// A diamond and a wide fan-in: what two paths reach from one failed root
// names it once; what many failed roots reach names each, sorted.
func TestReportHeldDiamondFanIn(t *testing.T) {
	vs := []*Vertex{vtx("bad", failing()), vtx("l", &fake{}), vtx("r", &fake{}), vtx("join", &fake{}), vtx("hub", &fake{})}
	edges := [][2]string{{"bad", "l"}, {"bad", "r"}, {"l", "join"}, {"r", "join"}}
	var roots []string
	for i := range 100 {
		name := "bad" + strconv.Itoa(100+i)
		vs = append(vs, vtx(name, failing()))
		edges = append(edges, [2]string{name, "hub"})
		roots = append(roots, "fake["+name+"]")
	}
	edges = append(edges, [2]string{"join", "hub"})
	reps, held := heldReports(t, graphOf(t, vs, edges...))
	checkHeld(t, reps, held, map[string][]string{
		"fake[l]": {"fake[bad]"}, "fake[r]": {"fake[bad]"}, "fake[join]": {"fake[bad]"},
		"fake[hub]": append(append([]string(nil), roots...), "fake[bad]"),
	})
}

// In noop, what waits on a resource that failed its check is held too;
// a vertex with autogroup off is a plain vertex, held alone.
func TestReportHeldNoopAndUngrouped(t *testing.T) {
	alone := DefaultMeta()
	alone.AutoGroup = false
	vs := []*Vertex{
		named("x", "bad", failing()),
		named("m", "a", &holderRes{memberRes{names: []string{"a"}}}),
		named("m", "b", &holderRes{memberRes{names: []string{"b"}}}),
		{Kind: "m", Name: "c", Meta: alone, Res: &holderRes{memberRes{names: []string{"c"}}}},
	}
	for _, noop := range []bool{false, true} {
		g := compile(t, vs, EdgeDecl{From: Ref{"x", "bad"}, To: Ref{"m", "a"}}, EdgeDecl{From: Ref{"x", "bad"}, To: Ref{"m", "c"}})
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, g); err == nil || ctx.Err() != nil {
			t.Fatalf("noop %v: run: %v (%v), want x[bad]'s failure", noop, err, ctx.Err())
		}
		cancel()
		reps := map[string]Report{}
		for _, r := range e.Reports() {
			reps[r.Res] = r
		}
		if reps["m[c]"].Group != "" || reps["m[a]"].Group == "" {
			t.Fatalf("noop %v: m[c] %+v, m[a] %+v: want m[c] alone, m[a] grouped", noop, reps["m[c]"], reps["m[a]"])
		}
		checkHeld(t, reps, e.State().Held, map[string][]string{"m[a]": {"x[bad]"}, "m[c]": {"x[bad]"}})
	}
}

// A failed resource that recovers on a retry, and one that a reload
// removes: what they held back is held no longer, and runs.
func TestHeldClears(t *testing.T) {
	for _, how := range []string{"retry", "reload"} {
		t.Run(how, func(t *testing.T) {
			release := make(chan struct{})
			bad := &fake{check: func(ctx context.Context, _ bool) (bool, error) {
				select {
				case <-release:
					return true, nil
				default:
					return false, context.DeadlineExceeded
				}
			}}
			meta := DefaultMeta()
			meta.Retry, meta.Delay = -1, 10
			child, grandchild := &fake{}, &fake{}
			vs := []*Vertex{{Kind: "fake", Name: "bad", Meta: meta, Res: bad}, vtx("child", child), vtx("grandchild", grandchild)}
			e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- e.Run(ctx, graphOf(t, vs, [2]string{"bad", "child"}, [2]string{"child", "grandchild"}))
			}()
			defer func() { cancel(); <-done }()
			wait.For(t, 10*time.Second, "2 held", func() bool { return e.State().Held == 2 })
			if how == "retry" {
				close(release)
			} else {
				e.Swap(graphOf(t, vs[1:], [2]string{"child", "grandchild"}))
			}
			wait.For(t, 10*time.Second, "converged, none held", func() bool { s := e.State(); return s.Converged && s.Held == 0 })
			if child.checks.Load() == 0 || grandchild.checks.Load() == 0 {
				t.Errorf("child checked %d times, grandchild %d", child.checks.Load(), grandchild.checks.Load())
			}
			for _, r := range e.Reports() {
				if r.Held {
					t.Errorf("%s still held: %+v", r.Res, r)
				}
			}
		})
	}
}

// Random graphs of plain vertices and members of a group that holds back
// members (holderRes), some failing: the engine's state counts as held
// what the reports hold, whatever the shape.
func TestHeldCountMatchesReportsRandom(t *testing.T) {
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		var vs []*Vertex
		var refs []Ref
		fail := map[string]bool{}
		for i := range 25 {
			name := strconv.Itoa(i)
			switch {
			case rng.IntN(3) == 0:
				if rng.IntN(6) == 0 {
					fail[name] = true
				}
				vs = append(vs, named("m", name, &holderRes{memberRes{names: []string{name}, fail: fail}}))
				refs = append(refs, Ref{"m", name})
			case rng.IntN(5) == 0:
				vs = append(vs, named("x", name, failing()))
				refs = append(refs, Ref{"x", name})
			default:
				vs = append(vs, named("x", name, &fake{}))
				refs = append(refs, Ref{"x", name})
			}
		}
		var edges []EdgeDecl
		for j := range refs {
			for i := range j {
				if rng.IntN(8) == 0 && !(refs[i].Kind == "m" && refs[j].Kind == "m") {
					edges = append(edges, EdgeDecl{From: refs[i], To: refs[j]})
				}
			}
		}
		g, err := Compile(context.Background(), &Decl{Name: "t", Vertices: vs, Edges: edges}, quietLog())
		if err != nil {
			continue // a cycle through the group
		}
		e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		e.Run(ctx, g)
		if ctx.Err() != nil {
			t.Fatalf("seed %d: the run did not end", seed)
		}
		cancel()
		var held int
		for _, r := range e.Reports() {
			if r.Held {
				held++
			}
		}
		if s := e.State(); s.Held != held {
			t.Errorf("seed %d: State().Held = %d, the reports hold %d", seed, s.Held, held)
		}
		assertTally(t, e)
	}
}
