package exec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// With creates, exec has a state on disk and passes the conformance suite:
// pollint is what lets its Watch see the file go.
func TestConformanceCreates(t *testing.T) {
	leakCheck(t)
	done := filepath.Join(t.TempDir(), "done")
	restest.Run(t, restest.Case{
		Kind: "exec",
		Res: func(t *testing.T) engine.Res {
			return &Exec{Cmd: "touch " + done, Creates: done, PollInt: 0.2}
		},
		State: func(t *testing.T) string {
			_, err := os.Stat(done)
			switch {
			case err == nil:
				return "exists"
			case errors.Is(err, fs.ErrNotExist):
				return "absent"
			}
			t.Fatal(err)
			return ""
		},
		Drifts: []restest.Drift{{Name: "removed", Do: func(t *testing.T) {
			if err := os.Remove(done); err != nil {
				t.Fatal(err)
			}
		}}},
	})
}

// Run the way the engine runs it, exec runs once at start and once more for
// every line its watchcmd prints.
func TestWatchCmdDrivesRuns(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "events")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Held open for writing (O_RDWR does not block on a FIFO) so that the
	// watchcmd's reads never see an end.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() }) // after the loop's own cleanup: EOF would end the watchcmd
	count := filepath.Join(dir, "count")
	x := &Exec{Shell: "/bin/sh", Cmd: "echo run >> " + count, WatchCmd: "cat " + fifo}
	if err := x.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := x.Init(restest.Env(t, "exec")); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex // guards errs
		errs []error
	)
	restest.Loop(t, x, func(changed bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil || !changed {
			errs = append(errs, err)
		}
	})
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "run\n")
	}
	wait.For(t, 5*time.Second, "the first run", func() bool { return runs() == 1 })
	for i := 2; i <= 4; i++ {
		if _, err := w.WriteString("changed\n"); err != nil {
			t.Fatal(err)
		}
		wait.For(t, 5*time.Second, "a run for the event", func() bool { return runs() == i })
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("checks without a run: %v", errs)
	}
}
