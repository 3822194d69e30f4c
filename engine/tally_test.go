package engine

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// assertTally checks that e.Tally counts what e.Reports lists.
func assertTally(t *testing.T, e *Engine) {
	t.Helper()
	var changed, pending int
	for _, r := range e.Reports() {
		changed += r.Count(r.Changed, r.MembersChanged)
		pending += r.Count(r.Pending, r.MembersChanged)
	}
	c, p := e.Tally()
	if c != changed || p != pending {
		t.Errorf("Tally() = %d changed, %d pending; the reports count %d, %d", c, p, changed, pending)
	}
}

// A group with a member already as wanted, and applying, one that fails:
// Tally counts the other members, alone, as changed (or, in noop, as
// pending), as the reports do.
func TestTallyCountsMembers(t *testing.T) {
	for _, noop := range []bool{false, true} {
		var vs []*Vertex
		for _, n := range []string{"a", "b", "c", "d"} {
			vs = append(vs, &Vertex{Kind: "m", Name: n, Meta: DefaultMeta(), Res: &memberRes{names: []string{n}, fail: map[string]bool{"b": !noop}, same: map[string]bool{"d": true}}})
		}
		vs = append(vs, vtx("plain", &fake{}))
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, compile(t, vs)); (err == nil) == !noop {
			t.Fatalf("noop %v: run: %v; want m[b] failed when applying", noop, err)
		}
		cancel()
		assertTally(t, e)
		c, p := e.Tally()
		if want := 2 + btoi(noop); noop && (p != want || c != 0) || !noop && (c != want || p != 0) {
			t.Errorf("noop %v: Tally() = %d changed, %d pending; want %d: the members other than m[d] (and, applying, m[b])", noop, c, p, want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A group of more members than its report keeps changes of: every member
// that changed (or, in noop, would change) is counted, by the reports and
// by Tally alike, not only those whose change was kept.
func TestTallyGroupBeyondKeptChanges(t *testing.T) {
	const members = MaxChangesKept + 50
	for _, noop := range []bool{false, true} {
		var vs []*Vertex
		for i := range members {
			n := fmt.Sprintf("f %d/é\"]", i)
			vs = append(vs, &Vertex{Kind: "m", Name: n, Meta: DefaultMeta(), Res: &memberRes{names: []string{n}}})
		}
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, compile(t, vs)); err != nil {
			t.Fatalf("noop %v: run: %v", noop, err)
		}
		cancel()
		assertTally(t, e)
		var listed int
		for _, r := range e.Reports() {
			if noop && r.Pending || !noop && r.Changed {
				listed++
			}
		}
		c, p := e.Tally()
		if got := c + p; listed != members || got != members || noop && c != 0 || !noop && p != 0 {
			t.Errorf("noop %v: %d reports changed or pending, Tally() = %d changed, %d pending; want %d members", noop, listed, c, p, members)
		}
	}
}

// In noop, a group whose check fails for one member still says what it
// would change of the others: they are pending in the reports, and
// counted, as applying counts the others' changes.
func TestNoopGroupMemberFailurePending(t *testing.T) {
	var vs []*Vertex
	for _, n := range []string{"a", "b", "c"} {
		vs = append(vs, &Vertex{Kind: "m", Name: n, Meta: DefaultMeta(), Res: &memberRes{names: []string{n}, fail: map[string]bool{"b": true}}})
	}
	for _, noop := range []bool{false, true} {
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, compile(t, vs)); err == nil {
			t.Fatalf("noop %v: run succeeded; want m[b] failed", noop)
		}
		cancel()
		assertTally(t, e)
		for _, r := range e.Reports() {
			if want := r.Res != "m[b]"; r.Pending != (want && noop) || r.Changed != (want && !noop) || r.Failed == want {
				t.Errorf("noop %v: %s changed %v, pending %v, failed %v; want changed (or, in noop, pending) %v", noop, r.Res, r.Changed, r.Pending, r.Failed, want)
			}
		}
		if c, p := e.Tally(); c+p != 2 {
			t.Errorf("noop %v: Tally() = %d changed, %d pending; want 2", noop, c, p)
		}
	}
}

// A notify edge to a kind that does not refresh (a file) changes nothing
// when applied: in noop, its child would not change either, and the run
// counts as pending what applying it counts as changed.
func TestNoopNotifyNonRefresher(t *testing.T) {
	for _, noop := range []bool{false, true} {
		p := &fake{check: func(_ context.Context, apply bool) (bool, error) { return true, nil }}
		plain := &fake{}
		refresher := refreshFake{&fake{refresh: func(context.Context) (bool, error) { return true, nil }}}
		d := &Decl{Name: "t", Vertices: []*Vertex{vtx("p", p), vtx("plain", plain), vtx("refresher", refresher)},
			Edges: []EdgeDecl{{From: Ref{"fake", "p"}, To: Ref{"fake", "plain"}, Notify: true}, {From: Ref{"fake", "p"}, To: Ref{"fake", "refresher"}, Notify: true}}}
		g, err := Compile(context.Background(), d, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, g); err != nil {
			t.Fatalf("noop %v: run: %v", noop, err)
		}
		cancel()
		assertTally(t, e)
		for _, r := range e.Reports() {
			if want := r.Res != "fake[plain]"; r.Changed != (want && !noop) || r.Pending != (want && noop) {
				t.Errorf("noop %v: %s changed %v, pending %v (%+v); want %v", noop, r.Res, r.Changed, r.Pending, r.Properties, want)
			}
		}
	}
}

// anonGroup is a group whose check reports its changes without saying
// whose (no ForMember), as the pkg kind did.
type anonGroup struct {
	noopRes
}

func (anonGroup) GroupKey() string                { return "k" }
func (anonGroup) Group(others []Res) (Res, error) { return anonGroup{}, nil }
func (anonGroup) CheckApply(ctx context.Context, apply bool) (bool, error) {
	Changed(ctx, Change{Property: "package x", From: "absent", To: "1.0"})
	return true, nil
}

// A group's change that names no member is listed, and counted, on its
// first member's report (the vertex that acted for the group), not lost.
func TestGroupChangeNamingNoMember(t *testing.T) {
	for _, noop := range []bool{false, true} {
		e := New(Config{Logger: quietLog(), Noop: noop, ConvergedTimeout: 0})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := e.Run(ctx, compile(t, []*Vertex{named("g", "a", anonGroup{}), named("g", "b", anonGroup{})})); err != nil {
			t.Fatalf("noop %v: run: %v", noop, err)
		}
		cancel()
		assertTally(t, e)
		var listed int
		for _, r := range e.Reports() {
			listed += len(r.Properties)
			if r.Group == "" {
				t.Errorf("noop %v: %s not grouped", noop, r.Res)
			}
		}
		if c, p := e.Tally(); listed != 1 || c+p != 1 {
			t.Errorf("noop %v: %d changes listed, Tally() = %d changed, %d pending; want 1 of the group", noop, listed, c, p)
		}
	}
}
