package engine

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// holderRes is memberRes as a MemberHolder: its group checks the members
// HeldBack does not name, and leaves the others for a later check.
type holderRes struct{ memberRes }

func (h *holderRes) HoldsBackMembers() {}

func (h *holderRes) Group(others []Res) (Res, error) {
	g := &holderRes{memberRes{names: append([]string(nil), h.names...), fail: h.fail}}
	for _, o := range others {
		g.names = append(g.names, o.(*holderRes).names...)
	}
	g.check = func(ctx context.Context, apply bool) (bool, error) {
		var errs []error
		for _, n := range g.names {
			res := "m[" + n + "]"
			switch {
			case HeldBack(ctx)[res]:
			case g.fail[n]:
				errs = append(errs, &MemberError{Res: res, Err: errors.New("bad member")})
			default:
				Changed(ForMember(ctx, res), Change{Property: "state", From: "absent", To: "present"})
			}
		}
		return true, errors.Join(errs...)
	}
	return g, nil
}

func failing() *fake {
	return &fake{check: func(context.Context, bool) (bool, error) { return false, errors.New("boom") }}
}

// heldReports runs g until it is quiet and returns its reports by name,
// and the count of held resources the engine's State gives.
func heldReports(t *testing.T, g *Graph) (map[string]Report, int) {
	t.Helper()
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx, g); err == nil || ctx.Err() != nil {
		t.Fatalf("run: %v (context: %v), want a failure, by itself", err, ctx.Err())
	}
	out := map[string]Report{}
	for _, r := range e.Reports() {
		out[r.Res] = r
	}
	return out, e.State().Held
}

// checkHeld fails t unless exactly the resources of want are held, each by
// the resources listed.
func checkHeld(t *testing.T, reps map[string]Report, held int, want map[string][]string) {
	t.Helper()
	if held != len(want) {
		t.Errorf("the engine's state counts %d held, want %d", held, len(want))
	}
	for res, r := range reps {
		by, ok := want[res]
		if r.Held != ok || !slices.Equal(r.HeldBy, by) {
			t.Errorf("%s: held %v by %v, want held %v by %v (report %+v)", res, r.Held, r.HeldBy, ok, by, r)
		}
		if ok && (r.Failed || r.Checks != 0 && r.Group == "") {
			t.Errorf("%s: held, and failed or checked: %+v", res, r)
		}
	}
	for res := range want {
		if _, ok := reps[res]; !ok {
			t.Errorf("no report of %s", res)
		}
	}
}

// What never ran because a resource it depends on failed says so, and
// names the nearest failed ancestors: a grandchild is held by the failed
// resource, not by the held child between them.
func TestReportHeldPlain(t *testing.T) {
	g := graphOf(t, []*Vertex{
		vtx("bad", failing()), vtx("bad2", failing()), vtx("child", &fake{}),
		vtx("grandchild", &fake{}), vtx("both", &fake{}), vtx("other", &fake{}),
	}, [2]string{"bad", "child"}, [2]string{"child", "grandchild"},
		[2]string{"grandchild", "both"}, [2]string{"bad2", "both"})
	reps, held := heldReports(t, g)
	checkHeld(t, reps, held, map[string][]string{
		"fake[child]":      {"fake[bad]"},
		"fake[grandchild]": {"fake[bad]"},
		"fake[both]":       {"fake[bad2]", "fake[bad]"},
	})
}

// A member of a group that leaves out what waits on a failed parent
// (MemberHolder) is held while the group ran for the others; what
// depends on that member is held by the failed parent, and what depends
// on a member that failed by that member.
func TestReportHeldGroupMember(t *testing.T) {
	fail := map[string]bool{"c": true}
	var vs []*Vertex
	for _, n := range []string{"a", "b", "c"} {
		vs = append(vs, named("m", n, &holderRes{memberRes{names: []string{n}, fail: fail}}))
	}
	vs = append(vs, named("x", "bad", failing()), named("x", "aftera", &fake{}),
		named("x", "afterb", &fake{}), named("x", "afterc", &fake{}))
	g := compile(t, vs,
		EdgeDecl{From: Ref{"x", "bad"}, To: Ref{"m", "a"}},
		EdgeDecl{From: Ref{"m", "a"}, To: Ref{"x", "aftera"}},
		EdgeDecl{From: Ref{"m", "b"}, To: Ref{"x", "afterb"}},
		EdgeDecl{From: Ref{"m", "c"}, To: Ref{"x", "afterc"}})
	reps, held := heldReports(t, g)
	checkHeld(t, reps, held, map[string][]string{
		"m[a]":      {"x[bad]"},
		"x[aftera]": {"x[bad]"},
		"x[afterc]": {"m[c]"},
	})
	if r := reps["m[b]"]; !r.Changed || r.Group == "" || reps["m[a]"].Group != r.Group {
		t.Errorf("m[b] %+v, m[a] %+v: want both of one group, which changed m[b]", r, reps["m[a]"])
	}
	if !reps["x[afterb]"].Changed && reps["x[afterb]"].Checks == 0 {
		t.Errorf("x[afterb] did not run: %+v", reps["x[afterb]"])
	}
}

// A group that cannot leave members out waits whole for a failed parent
// of one member: every member is held, by that parent.
func TestReportHeldWholeGroup(t *testing.T) {
	var vs []*Vertex
	for _, n := range []string{"a", "b"} {
		vs = append(vs, named("m", n, &memberRes{names: []string{n}}))
	}
	vs = append(vs, named("x", "bad", failing()))
	g := compile(t, vs, EdgeDecl{From: Ref{"x", "bad"}, To: Ref{"m", "a"}})
	reps, held := heldReports(t, g)
	checkHeld(t, reps, held, map[string][]string{"m[a]": {"x[bad]"}, "m[b]": {"x[bad]"}})
}
