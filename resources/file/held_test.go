package file

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// A chain of file groups, each member depending on one member of the
// group before, a2 failing (its path is a directory in the way): the
// reports hold b2 and c2 by file[a2], and nothing else; the engine's
// state counts 2 held. Once a2's retry succeeds, nothing is held.
func TestGroupToGroupHeldBy(t *testing.T) {
	dir, d := groupChain(t)
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	e := engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: -1})
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	go func() { done <- e.Run(ctx, g) }()
	written := func(p string) bool { _, err := os.Stat(dir + "/" + p); return err == nil }
	wait.For(t, 20*time.Second, "b1 and c1 written, 2 held", func() bool {
		return written("s2/b1") && written("s3/c1") && e.State().Held == 2
	})
	cancel()
	<-done
	held := map[string][]string{}
	for _, r := range e.Reports() {
		if r.Held {
			held[r.Res] = r.HeldBy
		}
	}
	want := map[string][]string{"file[b2]": {"file[a2]"}, "file[c2]": {"file[a2]"}}
	if len(held) != len(want) || !slices.Equal(held["file[b2]"], want["file[b2]"]) || !slices.Equal(held["file[c2]"], want["file[c2]"]) {
		t.Errorf("held %v, want %v", held, want)
	}

	// the same graph, and a2 recovers: nothing is held
	e = engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: -1})
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g, err = engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	go func() { done <- e.Run(ctx, g) }()
	wait.For(t, 20*time.Second, "2 held", func() bool { return e.State().Held == 2 })
	must(t, os.RemoveAll(dir+"/s1/a2"))
	wait.For(t, 20*time.Second, "converged, none held", func() bool { s := e.State(); return s.Converged && s.Held == 0 })
	cancel()
	<-done
	for _, r := range e.Reports() {
		if r.Held || r.Failed {
			t.Errorf("after a2 recovered: %+v", r)
		}
	}
}
