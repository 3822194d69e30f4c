package exec

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
)

type changeRec struct {
	mu sync.Mutex // guards cs
	cs []engine.Change
}

func (r *changeRec) Record(c engine.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cs = append(r.cs, c)
}

func TestExecReportsWhy(t *testing.T) {
	dir := t.TempDir()
	creates := filepath.Join(dir, "done")
	for _, tc := range []struct {
		x     *Exec
		apply bool
		want  []engine.Change
	}{
		{&Exec{Cmd: "true"}, false, []engine.Change{{Property: "cmd", To: "true", Why: "no ifcmd or creates: runs at every check"}}},
		{&Exec{Cmd: "true", Creates: creates}, false, []engine.Change{{Property: "cmd", To: "true", Why: "creates " + creates + " is missing"}}},
		{&Exec{Cmd: "true", IfCmd: "true"}, false, []engine.Change{{Property: "cmd", To: "true", Why: "ifcmd true decides (not run in noop)"}}},
		{&Exec{Cmd: "true", IfCmd: "true"}, true, []engine.Change{{Property: "cmd", To: "true", Why: "ifcmd exited 0"}}},
		{&Exec{Cmd: "true", IfCmd: "false"}, true, nil},
		{&Exec{Cmd: "true", Creates: creates, IfCmd: "true"}, true, []engine.Change{{Property: "cmd", To: "true", Why: "creates " + creates + " is missing; ifcmd exited 0"}}},
	} {
		x := tc.x
		if err := x.Validate(); err != nil {
			t.Fatal(err)
		}
		rec := &changeRec{}
		changed, err := x.CheckApply(engine.WithRecorder(context.Background(), rec), tc.apply)
		if err != nil {
			t.Fatal(err)
		}
		if changed != (len(tc.want) > 0) || len(rec.cs) != len(tc.want) || (len(rec.cs) == 1 && rec.cs[0] != tc.want[0]) {
			t.Errorf("%q apply=%v: changed %v, %+v, want %+v", tc.x.Cmd, tc.apply, changed, rec.cs, tc.want)
		}
	}
}
