package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// memberRes is a fake groupable kind whose group checks each member in
// turn: a member named in fail fails, the others report a change.
type memberRes struct {
	fake
	names []string
	fail  map[string]bool
	same  map[string]bool // members already as wanted: no change
}

func (m *memberRes) GroupKey() string { return "k" }
func (m *memberRes) Group(others []Res) (Res, error) {
	g := &memberRes{names: append([]string(nil), m.names...), fail: m.fail, same: m.same}
	for _, o := range others {
		g.names = append(g.names, o.(*memberRes).names...)
	}
	g.check = func(ctx context.Context, apply bool) (bool, error) {
		var errs []error
		for _, n := range g.names {
			res := "m[" + n + "]"
			if g.fail[n] {
				errs = append(errs, &MemberError{Res: res, Err: errors.New("bad member")})
				continue
			}
			if g.same[n] {
				continue
			}
			Changed(ForMember(ctx, res), Change{Property: "state", From: "absent", To: "present"})
		}
		return true, errors.Join(errs...)
	}
	return g, nil
}

// A group whose one member fails: the run's error names that member, not
// the group; the other members' changes are kept in the report and logged
// under their own names; what depends on the failed member waits, what
// depends only on the others goes on.
func TestGroupMemberFailure(t *testing.T) {
	fail := map[string]bool{"b": true}
	var vs []*Vertex
	for _, n := range []string{"a", "b", "c"} {
		vs = append(vs, &Vertex{Kind: "m", Name: n, Meta: DefaultMeta(), Res: &memberRes{names: []string{n}, fail: fail}})
	}
	child, held, both := &fake{}, &fake{}, &fake{}
	vs = append(vs,
		&Vertex{Kind: "x", Name: "after", Meta: DefaultMeta(), Res: child},
		&Vertex{Kind: "x", Name: "afterb", Meta: DefaultMeta(), Res: held},
		&Vertex{Kind: "x", Name: "afterab", Meta: DefaultMeta(), Res: both})
	g := compile(t, vs,
		EdgeDecl{From: Ref{"m", "a"}, To: Ref{"x", "after"}},
		EdgeDecl{From: Ref{"m", "b"}, To: Ref{"x", "afterb"}},
		EdgeDecl{From: Ref{"m", "a"}, To: Ref{"x", "afterab"}},
		EdgeDecl{From: Ref{"m", "b"}, To: Ref{"x", "afterab"}})

	var out syncBuf
	e := New(Config{Logger: slog.New(slog.NewTextHandler(&out, nil)), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := e.Run(ctx, g)
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("run: %v, want a *RunError", err)
	}
	if len(re.Failures) != 1 || re.Failures[0].Res != "m[b]" || re.Failures[0].Err.Error() != "bad member" {
		t.Fatalf("failures %+v, want m[b] alone, with its own error", re.Failures)
	}
	// The report lists each member by its own name: its own changes, its
	// own failure, and the group that acted for it.
	assertTally(t, e)
	byRes := map[string]Report{}
	for _, r := range e.Reports() {
		byRes[r.Res] = r
	}
	for _, m := range []string{"m[a]", "m[b]", "m[c]"} {
		r, ok := byRes[m]
		if !ok || !strings.HasPrefix(r.Group, "m[autogroup:") {
			t.Fatalf("no report of member %s in its group: %+v", m, e.Reports())
		}
		failed := m == "m[b]"
		if r.Failed != failed || r.Changed == failed || failed && r.Error != "bad member" {
			t.Errorf("%s: report %+v: want failed=%v with its own error, changed=%v", m, r, failed, !failed)
		}
		if !failed && (len(r.Properties) != 1 || r.Properties[0].Res != m) {
			t.Errorf("%s: properties %+v: want its own change only", m, r.Properties)
		}
	}
	log := out.String()
	for _, want := range []string{`msg=changed res=m[a] property=state`, `msg=changed res=m[c] property=state`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "res=m[b] property") {
		t.Errorf("the failed member's change is logged:\n%s", log)
	}
	if child.checks.Load() == 0 {
		t.Errorf("x[after], which depends only on m[a], was held back by m[b]'s failure")
	}
	if held.checks.Load() != 0 || both.checks.Load() != 0 {
		t.Errorf("what depends on the failed m[b] ran: x[afterb] %d, x[afterab] %d checks", held.checks.Load(), both.checks.Load())
	}
}

// A group's name lists a few members and counts the rest: a group of a
// directory of 10,000 files would put them all in every log line.
func TestGroupNameBounded(t *testing.T) {
	var vs []*Vertex
	for i := range 8 {
		vs = append(vs, named("grp", fmt.Sprintf("r%d", i), &groupRes{key: "k"}))
	}
	g := compile(t, vs)
	if got, want := g.Vertices()[0].String(), "grp[autogroup:(r0,r1,r2,r3,r4,...+3 more)]"; got != want {
		t.Fatalf("group named %s, want %s", got, want)
	}
	if n := len(g.Vertices()[0].Members()); n != 8 {
		t.Fatalf("%d members listed for the DOT output, want 8", n)
	}
}

// An empty group key keeps a resource out of every group.
func TestEmptyGroupKeyNotGrouped(t *testing.T) {
	g := compile(t, []*Vertex{
		named("grp", "a", &groupRes{}), named("grp", "b", &groupRes{}),
		named("grp", "c", &groupRes{key: "k"}), named("grp", "d", &groupRes{key: "k"}),
	})
	var got []string
	for _, v := range g.Vertices() {
		got = append(got, v.String())
	}
	slices.Sort(got)
	if want := []string{"grp[a]", "grp[autogroup:(c,d)]", "grp[b]"}; !slices.Equal(got, want) {
		t.Fatalf("vertices %v, want %v: a and b alone, c and d grouped", got, want)
	}
}

// OnlyWatched tells a check asked for by the resource's own watch alone
// from one asked for by anything else: the first check, a parent's change.
func TestOnlyWatched(t *testing.T) {
	type check struct {
		name    string
		watched bool
	}
	checks := make(chan check, 16)
	dirty := make(chan Events, 1)
	var parentRuns atomic.Int32
	parent := &fake{check: func(ctx context.Context, apply bool) (bool, error) {
		// The parent changes on its second check, which the test asks for.
		return parentRuns.Add(1) == 2, nil
	}}
	var parentEv atomic.Value
	parent.watch = func(ctx context.Context, ev Events) error {
		parentEv.Store(ev)
		ev.Running()
		<-ctx.Done()
		return nil
	}
	child := &fake{
		check: func(ctx context.Context, apply bool) (bool, error) {
			checks <- check{"child", OnlyWatched(ctx)}
			return false, nil
		},
		watch: func(ctx context.Context, ev Events) error {
			dirty <- ev
			ev.Running()
			<-ctx.Done()
			return nil
		},
	}
	g := graphOf(t, []*Vertex{vtx("p", parent), vtx("c", child)}, [2]string{"p", "c"})
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	next := func(what string) bool {
		select {
		case c := <-checks:
			return c.watched
		case <-ctx.Done():
			t.Fatalf("%s: no check", what)
			return false
		}
	}
	if next("first check") {
		t.Fatal("the first check is said to be asked for by the watch alone")
	}
	(<-dirty).Dirty()
	if !next("after the watch fired") {
		t.Fatal("a check asked for by the watch alone is not said to be")
	}
	parentEv.Load().(Events).Dirty() // the parent changes: the child is checked again
	if next("after the parent changed") {
		t.Fatal("a check asked for by a parent's change is said to be asked for by the watch alone")
	}
	cancel()
	<-done
}

// In noop, a group's report counts the members that would change.
func TestGroupNoopCountsMembers(t *testing.T) {
	var vs []*Vertex
	for _, n := range []string{"a", "b", "c", "d"} {
		vs = append(vs, &Vertex{Kind: "m", Name: n, Meta: DefaultMeta(), Res: &memberRes{names: []string{n}}})
	}
	g := compile(t, vs)
	e := New(Config{Logger: quietLog(), Noop: true, ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx, g); err != nil {
		t.Fatal(err)
	}
	assertTally(t, e)
	rs := e.Reports()
	if len(rs) != 4 {
		t.Fatalf("reports %+v: want one per member of the group", rs)
	}
	for _, r := range rs {
		if !r.Pending || !r.Noop || r.Group == "" || len(r.Properties) != 1 || r.Properties[0].Res != r.Res {
			t.Errorf("report %+v: want a pending member of the group, with its own change", r)
		}
	}
}
