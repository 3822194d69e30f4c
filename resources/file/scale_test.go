package file

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/resources/restest"
)

// fleet is n file resources spread over dirs directories under root, the
// shape of the scale test and the benchmarks.
type fleet struct {
	root   string
	res    []*File
	record bool // each check reports to a recorder, as under the engine
	recCtx map[*File]context.Context
}

// recordingCtx is r's context with a recorder: made once per resource, as
// the engine makes one per vertex.
func (f *fleet) recordingCtx(r *File) context.Context {
	return f.recCtx[r]
}

func newFleet(tb testing.TB, n, dirs int) *fleet {
	tb.Helper()
	f := &fleet{root: tb.TempDir()}
	quiet := slog.New(slog.DiscardHandler)
	for i := range n {
		r := &File{
			Path:    filepath.Join(f.root, fmt.Sprintf("d%03d", i%dirs), fmt.Sprintf("f%05d", i)),
			Content: ptr(fmt.Sprintf("managed file %05d\n", i)),
		}
		if err := r.Validate(); err != nil {
			tb.Fatal(err)
		}
		r.log = quiet
		f.res = append(f.res, r)
	}
	f.recCtx = make(map[*File]context.Context, n)
	for _, r := range f.res {
		f.recCtx[r] = engine.WithRecorder(context.Background(), &restest.Recorder{})
	}
	return f
}

// checkAll runs CheckApply on every resource with workers goroutines, as the
// engine runs independent vertices in parallel, and counts the changes.
func (f *fleet) checkAll(tb testing.TB, apply bool, workers int) int {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // guards changed, errs
		changed int
		errs    []error
		next    = make(chan *File)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				ctx := context.Background()
				if f.record {
					ctx = f.recordingCtx(r)
				}
				c, err := r.CheckApply(ctx, apply)
				if c || err != nil {
					mu.Lock()
					if c {
						changed++
					}
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, r := range f.res {
		next <- r
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		tb.Fatalf("%d errors, the first: %v", len(errs), errs[0])
	}
	return changed
}

// create writes every file directly, quickly and without syncing, as a
// previous run of the resources would have left them.
func (f *fleet) create(tb testing.TB) {
	tb.Helper()
	for _, r := range f.res {
		if err := os.MkdirAll(filepath.Dir(r.s.path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(r.s.path, r.s.content, 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chmod(r.s.path, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestTenThousandFilesOneInotify watches 10,000 file resources in 100
// directories and asks the kernel what the process holds: one inotify
// instance, and one watch per directory and per ancestor.
func TestTenThousandFilesOneInotify(t *testing.T) {
	const n, dirs = 10000, 100
	f := newFleet(t, n, dirs)
	f.create(t)
	if changed := f.checkAll(t, true, 4); changed != 0 {
		t.Fatalf("%d of the files directly created needed a change", changed)
	}
	w, err := fswatch.Default()
	must(t, err)
	baseline := w.Watches()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	events := make([]*restest.Events, n)
	errs := make(chan error, n)
	for i, r := range f.res {
		events[i] = restest.NewEvents()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Watch(ctx, events[i]); err != nil {
				errs <- err
			}
		}()
	}
	stop := func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("Watch: %v", err)
		}
	}
	for i, ev := range events {
		if !ev.WaitRunning(restest.DefaultTimeout, nil) {
			stop()
			t.Fatalf("resource %d did not call Running", i)
		}
	}

	// One watch per directory and per directory above them, nothing more.
	ancestors := 0
	for d := f.root; ; d = filepath.Dir(d) {
		ancestors++
		if d == "/" {
			break
		}
	}
	instances, watches, err := fswatch.CountInotify()
	must(t, err)
	t.Logf("%d file resources in %d directories: %d inotify instance(s), %d watches (%d ancestors)", n, dirs, instances, watches, ancestors)
	if instances != 1 {
		t.Errorf("%d inotify instances, want 1", instances)
	}
	if max := dirs + ancestors + baseline; watches > max {
		t.Errorf("%d inotify watches, want at most %d directories + %d ancestors", watches, dirs, ancestors)
	}
	if watches != w.Watches() {
		t.Errorf("the kernel holds %d watches, fswatch counts %d", watches, w.Watches())
	}

	// An edit reaches its resource and no other in its directory. The edit
	// of a file in another directory, seen after it, proves all earlier
	// events were dispatched: inotify's queue is ordered.
	for _, ev := range events {
		ev.Drain()
	}
	edit, later := 5700, 5701 // d000 and d001
	must(t, os.WriteFile(f.res[edit].s.path, []byte("edited\n"), 0o644))
	if !events[edit].WaitDirty(restest.DefaultTimeout) {
		t.Fatal("the edited file's resource was not told")
	}
	must(t, os.WriteFile(f.res[later].s.path, []byte("edited\n"), 0o644))
	if !events[later].WaitDirty(restest.DefaultTimeout) {
		t.Fatal("the second edited file's resource was not told")
	}
	for i := edit % dirs; i < n; i += dirs {
		if i == edit {
			continue
		}
		select {
		case <-events[i].Dirtied():
			t.Errorf("resource %d was told of an edit to a sibling", i)
		default:
		}
	}

	stop()
	if got := w.Watches(); got != baseline {
		t.Errorf("%d watches left after every Watch returned, want %d", got, baseline)
	}
	_, watches, err = fswatch.CountInotify()
	must(t, err)
	if watches != w.Watches() {
		t.Errorf("after the end: the kernel holds %d watches, fswatch counts %d", watches, w.Watches())
	}
}
