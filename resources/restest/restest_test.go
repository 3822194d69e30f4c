package restest

import (
	"context"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
)

func TestCheckReported(t *testing.T) {
	for _, tc := range []struct {
		changed bool
		cs      []engine.Change
		ok      bool
	}{
		{false, nil, true},
		{true, []engine.Change{{Property: "content"}}, true},
		{true, nil, false}, // changed, said nothing
		{false, []engine.Change{{Property: "mode"}}, false},     // said something, changed nothing
		{true, []engine.Change{{Property: "", To: "x"}}, false}, // no property
	} {
		if err := CheckReported(tc.changed, tc.cs); (err == nil) != tc.ok {
			t.Errorf("%v %+v: %v, want ok=%v", tc.changed, tc.cs, err, tc.ok)
		}
	}
}

// silent changes without saying what: the suite must catch it.
type silent struct{}

func (silent) Validate() error { return nil }
func (silent) Watch(ctx context.Context, ev engine.Events) error {
	ev.Running()
	<-ctx.Done()
	return nil
}
func (silent) CheckApply(context.Context, bool) (bool, error) { return true, nil }
func (silent) Close() error                                   { return nil }

func TestCheckApplyFailsASilentKind(t *testing.T) {
	ft := &fakeTB{TB: t}
	if changed, err := CheckApply(ft, silent{}, false); !changed || err != nil {
		t.Fatal(changed, err)
	}
	if !ft.failed {
		t.Error("a kind that changes without an engine.Change passed")
	}
}

type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Errorf(string, ...any) { f.failed = true }
func (f *fakeTB) Helper()               {}
