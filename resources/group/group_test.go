package group

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/internal/shadow"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

func ptr[T any](v T) *T { return &v }

// state is the group's line in /etc/group, or "absent".
func state(t *testing.T, name string) string {
	t.Helper()
	g, err := shadow.LookupGroup(name)
	if err != nil {
		return "absent: " + err.Error()
	}
	return g.Name + ":" + strconv.FormatUint(uint64(g.GID), 10) + ":" + strings.Join(g.Members, ",")
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// The conformance suite, inside a test host, with the real groupadd,
// groupmod and groupdel: a group with a gid is created, and a groupmod -g
// and a groupdel behind its back are seen through inotify and repaired.
func TestConformanceExists(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const name = "mgmt-test-g"
	restest.Run(t, restest.Case{
		Kind: "group",
		Res: func(t *testing.T) engine.Res {
			r := &Group{GID: ptr(uint32(4242))}
			r.SetName(name)
			return r
		},
		State: func(t *testing.T) string { return state(t, name) },
		Drifts: []restest.Drift{
			{Name: "groupmod -g", Do: func(t *testing.T) { run(t, "groupmod", "-g", "4343", name) }},
			{Name: "groupdel", Do: func(t *testing.T) { run(t, "groupdel", name) }},
		},
	})
	if got, want := state(t, name), name+":4242:"; got != want {
		t.Errorf("at the end: %q, want %q", got, want)
	}
}

// An absent group is removed, and removed again when groupadd brings it
// back.
func TestConformanceAbsent(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const name = "mgmt-test-gone"
	run(t, "groupadd", name)
	restest.Run(t, restest.Case{
		Kind: "group",
		Res: func(t *testing.T) engine.Res {
			r := &Group{State: StateAbsent}
			r.SetName(name)
			return r
		},
		State: func(t *testing.T) string { return state(t, name) },
		Drifts: []restest.Drift{
			{Name: "groupadd", Do: func(t *testing.T) { run(t, "groupadd", "-g", "4444", name) }},
		},
	})
}

// A change is reported with its property, in noop as in real runs.
func TestReportsChanges(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const name = "mgmt-test-rep"
	run(t, "groupadd", "-g", "4500", name)
	r := &Group{GID: ptr(uint32(4501))}
	r.SetName(name)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	ctx := engine.WithRecorder(context.Background(), rec)
	if changed, err := r.CheckApply(ctx, false); err != nil || !changed {
		t.Fatalf("CheckApply(noop) = %v, %v; want a change", changed, err)
	}
	want := []engine.Change{{Property: "gid", From: "4500", To: "4501"}}
	if len(rec.got) != 1 || rec.got[0] != want[0] {
		t.Fatalf("reported %+v, want %+v", rec.got, want)
	}
}

type recorder struct{ got []engine.Change }

func (r *recorder) Record(c engine.Change) { r.got = append(r.got, c) }
