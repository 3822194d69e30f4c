package fswatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/wait"
)

const deadline = 5 * time.Second

// counter is a callback that counts its calls and signals them.
type counter struct {
	n  atomic.Int64
	ch chan struct{}
}

func newCounter() *counter { return &counter{ch: make(chan struct{}, 1)} }

func (c *counter) fn() {
	c.n.Add(1)
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *counter) drain() {
	select {
	case <-c.ch:
	default:
	}
	c.n.Store(0)
}

func (c *counter) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.ch:
	case <-time.After(deadline):
		t.Fatalf("no callback within %v after %s", deadline, what)
	}
}

// logRecorder is a slog handler that keeps the messages it is given.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// fixture is a watcher on a fresh temporary directory, with a sentinel
// file whose callback proves that every earlier event was dispatched: the
// inotify queue is one ordered stream.
type fixture struct {
	w        *Watcher
	root     string
	sentinel *counter
	log      *logRecorder
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	leakcheck.Check(t, deadline)
	rec := &logRecorder{}
	if opts.Logger == nil {
		opts.Logger = slog.New(rec)
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	f := &fixture{w: w, root: t.TempDir(), sentinel: newCounter(), log: rec}
	if _, err := w.Watch(filepath.Join(f.root, "sentinel"), f.sentinel.fn); err != nil {
		t.Fatal(err)
	}
	return f
}

// barrier returns once every event caused before it was dispatched.
func (f *fixture) barrier(t *testing.T) {
	t.Helper()
	f.sentinel.drain()
	if err := os.WriteFile(filepath.Join(f.root, "sentinel"), []byte(time.Now().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f.sentinel.wait(t, "writing the sentinel")
}

func (f *fixture) path(elem ...string) string {
	return filepath.Join(append([]string{f.root}, elem...)...)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFileEvents(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.path("f")
	c := newCounter()
	_, err := f.w.Watch(p, c.fn)
	must(t, err)

	steps := []struct {
		what string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(p, []byte("a"), 0o644) }},
		{"write", func() error {
			fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = fh.WriteString("b")
			return errors.Join(err, fh.Close())
		}},
		{"chmod", func() error { return os.Chmod(p, 0o600) }},
		{"chown", func() error { return os.Chown(p, 1, 1) }},
		{"rename away", func() error { return os.Rename(p, f.path("g")) }},
		{"rename in", func() error { return os.Rename(f.path("g"), p) }},
		{"replace by symlink", func() error {
			if err := os.Symlink("/etc/hostname", f.path("l")); err != nil {
				return err
			}
			return os.Rename(f.path("l"), p)
		}},
		{"remove", func() error { return os.Remove(p) }},
	}
	for _, s := range steps {
		f.barrier(t)
		c.drain()
		must(t, s.do())
		c.wait(t, s.what)
	}

	// A sibling is not our business.
	f.barrier(t)
	c.drain()
	must(t, os.WriteFile(f.path("sibling"), []byte("x"), 0o644))
	f.barrier(t)
	if n := c.n.Load(); n != 0 {
		t.Errorf("writing a sibling called the callback %d times", n)
	}
}

// ancestors counts the directories above and including dir.
func ancestors(dir string) []string {
	var out []string
	for d := dir; ; d = filepath.Dir(d) {
		out = append(out, d)
		if d == "/" {
			return out
		}
	}
}

func TestOneWatchPerDirectory(t *testing.T) {
	f := newFixture(t, Options{})
	var cancels []func()
	for d := range 3 {
		dir := f.path(fmt.Sprintf("d%d", d))
		must(t, os.Mkdir(dir, 0o755))
		for i := range 100 {
			cancel, err := f.w.Watch(filepath.Join(dir, fmt.Sprintf("f%d", i)), func() {})
			must(t, err)
			cancels = append(cancels, cancel)
		}
	}
	want := 3 + len(ancestors(f.root))
	if got := f.w.Watches(); got != want {
		t.Errorf("Watches() = %d, want %d (3 directories and %d ancestors)", got, want, want-3)
	}
	instances, watches, err := CountInotify()
	must(t, err)
	if instances != 1 || watches != want {
		t.Errorf("kernel: %d inotify instances with %d watches, want 1 with %d", instances, watches, want)
	}
	for _, cancel := range cancels {
		cancel()
		cancel() // twice is harmless
	}
	// Only the sentinel's chain is left.
	if got, want := f.w.Watches(), len(ancestors(f.root)); got != want {
		t.Errorf("after cancelling: Watches() = %d, want %d", got, want)
	}
	_, watches, err = CountInotify()
	must(t, err)
	if watches != len(ancestors(f.root)) {
		t.Errorf("after cancelling: the kernel holds %d watches, want %d", watches, len(ancestors(f.root)))
	}
}

func TestFollowsMissingPath(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.path("a", "b", "c", "f")
	c := newCounter()
	_, err := f.w.Watch(p, c.fn)
	must(t, err)
	before := f.w.Watches()

	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	c.wait(t, "creating the parent directories")
	f.barrier(t)
	if got := f.w.Watches(); got != before+3 {
		t.Errorf("Watches() = %d after creating a/b/c, want %d", got, before+3)
	}
	c.drain()
	must(t, os.WriteFile(p, []byte("x"), 0o644))
	c.wait(t, "creating the file in the new directory")
}

func TestParentRemovedAndRecreated(t *testing.T) {
	f := newFixture(t, Options{})
	dir := f.path("d")
	p := filepath.Join(dir, "f")
	must(t, os.Mkdir(dir, 0o755))
	must(t, os.WriteFile(p, []byte("x"), 0o644))
	c := newCounter()
	_, err := f.w.Watch(p, c.fn)
	must(t, err)
	before := f.w.Watches()

	for i := range 3 {
		f.barrier(t)
		c.drain()
		must(t, os.RemoveAll(dir))
		c.wait(t, "removing the parent directory")
		f.barrier(t)
		if got := f.w.Watches(); got != before-1 {
			t.Errorf("round %d: Watches() = %d with the parent gone, want %d", i, got, before-1)
		}
		must(t, os.Mkdir(dir, 0o755))
		c.wait(t, "recreating the parent directory")
		f.barrier(t)
		c.drain()
		must(t, os.WriteFile(p, []byte("y"), 0o644))
		c.wait(t, "writing the file in the recreated directory")
	}
	_, watches, err := CountInotify()
	must(t, err)
	if watches != f.w.Watches() {
		t.Errorf("the kernel holds %d watches, the watcher thinks %d", watches, f.w.Watches())
	}
}

func TestAncestorRenamed(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.path("a", "b", "f")
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	c := newCounter()
	_, err := f.w.Watch(p, c.fn)
	must(t, err)

	f.barrier(t)
	c.drain()
	must(t, os.Rename(f.path("a"), f.path("x")))
	c.wait(t, "renaming a grandparent")

	// The moved tree is no longer ours.
	f.barrier(t)
	c.drain()
	must(t, os.WriteFile(f.path("x", "b", "f"), []byte("moved"), 0o644))
	f.barrier(t)
	if n := c.n.Load(); n != 0 {
		t.Errorf("a write in the moved-away tree called the callback %d times", n)
	}

	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	c.wait(t, "recreating the directories")
	f.barrier(t)
	c.drain()
	must(t, os.WriteFile(p, []byte("new"), 0o644))
	c.wait(t, "writing the file at its path again")

	_, watches, err := CountInotify()
	must(t, err)
	if watches != f.w.Watches() {
		t.Errorf("the kernel holds %d watches, the watcher thinks %d: a watch leaked", watches, f.w.Watches())
	}
}

func TestWatchTree(t *testing.T) {
	f := newFixture(t, Options{})
	root := f.path("tree")
	c := newCounter()
	_, err := f.w.WatchTree(root, c.fn)
	must(t, err)

	must(t, os.MkdirAll(filepath.Join(root, "x", "y"), 0o755))
	c.wait(t, "creating the tree")
	f.barrier(t)
	deep := filepath.Join(root, "x", "y", "z")
	c.drain()
	must(t, os.WriteFile(deep, []byte("1"), 0o644))
	c.wait(t, "creating a file two levels down")
	c.drain()
	must(t, os.Chmod(deep, 0o600))
	c.wait(t, "chmod two levels down")
	c.drain()
	must(t, os.RemoveAll(filepath.Join(root, "x")))
	c.wait(t, "removing a subtree")
	f.barrier(t)
	if got, want := f.w.Watches(), len(ancestors(root)); got != want {
		t.Errorf("Watches() = %d after removing the subtree, want %d", got, want)
	}
	_, watches, err := CountInotify()
	must(t, err)
	if watches != f.w.Watches() {
		t.Errorf("the kernel holds %d watches, the watcher thinks %d", watches, f.w.Watches())
	}
}

func TestWatchLimitFallsBackToPolling(t *testing.T) {
	f := newFixture(t, Options{PollInterval: 20 * time.Millisecond})
	must(t, os.Mkdir(f.path("d"), 0o755))
	must(t, os.Mkdir(f.path("e"), 0o755))
	var full atomic.Bool
	full.Store(true)
	f.w.mu.Lock()
	realAdd := f.w.add
	f.w.add = func(dir string) error {
		if full.Load() {
			return &os.PathError{Op: "inotify_add_watch", Path: dir, Err: syscall.ENOSPC}
		}
		return realAdd(dir)
	}
	f.w.mu.Unlock()

	c1, c2 := newCounter(), newCounter()
	_, err := f.w.Watch(f.path("d", "f"), c1.fn)
	must(t, err)
	_, err = f.w.Watch(f.path("e", "f"), c2.fn)
	must(t, err)
	if got := f.w.Polling(); got != 2 {
		t.Fatalf("Polling() = %d, want 2", got)
	}
	if got := f.log.count("watch limit"); got != 1 {
		t.Errorf("the watch limit was logged %d times, want once", got)
	}

	must(t, os.WriteFile(f.path("d", "f"), []byte("x"), 0o644))
	c1.wait(t, "writing a polled path")

	full.Store(false)
	c2.wait(t, "watches becoming available again")
	wait.Until(t, deadline, func() bool { return f.w.Polling() == 0 },
		func() string { return fmt.Sprintf("Polling() = %d once watches are available, want 0", f.w.Polling()) })
	f.barrier(t)
	c2.drain()
	must(t, os.WriteFile(f.path("e", "f"), []byte("x"), 0o644))
	c2.wait(t, "writing a path watched again")
}

func TestQueueOverflowRescans(t *testing.T) {
	f := newFixture(t, Options{})
	must(t, os.Mkdir(f.path("noisy"), 0o755))
	must(t, os.Mkdir(f.path("quiet"), 0o755))
	a, b := f.path("noisy", "a"), f.path("noisy", "b")
	must(t, os.WriteFile(a, nil, 0o644))
	must(t, os.WriteFile(b, nil, 0o644))
	noisy, quiet := newCounter(), newCounter()
	_, err := f.w.Watch(a, noisy.fn)
	must(t, err)
	_, err = f.w.Watch(f.path("quiet", "f"), quiet.fn)
	must(t, err)
	f.barrier(t)
	quiet.drain()

	// Stall the dispatcher and make more events than the kernel queues
	// (fs.inotify.max_queued_events, 16384 by default). Alternating two
	// names keeps the kernel from merging them.
	max := 16384
	if raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		if _, err := fmt.Sscan(strings.TrimSpace(string(raw)), &max); err != nil {
			t.Fatal(err)
		}
	}
	f.w.mu.Lock()
	for i := range 2*max + 8192 {
		p := a
		if i%2 == 1 {
			p = b
		}
		if err := os.Chmod(p, os.FileMode(0o600+i%2)); err != nil {
			f.w.mu.Unlock()
			t.Fatal(err)
		}
	}
	f.w.mu.Unlock()

	quiet.wait(t, "a queue overflow")
	if got := f.log.count("overflowed"); got != 1 {
		t.Errorf("the overflow was logged %d times, want once: %q", got, f.log.msgs)
	}
	// Still watching afterwards.
	f.barrier(t)
	quiet.drain()
	must(t, os.WriteFile(f.path("quiet", "f"), []byte("x"), 0o644))
	quiet.wait(t, "writing after the overflow")
}

func TestCloseAndCancel(t *testing.T) {
	leakcheck.Check(t, deadline)
	w, err := New(Options{})
	must(t, err)
	instances, _, err := CountInotify()
	must(t, err)
	c := newCounter()
	cancel, err := w.Watch(filepath.Join(t.TempDir(), "f"), c.fn)
	must(t, err)
	must(t, w.Close())
	must(t, w.Close())
	cancel()
	if _, err := w.Watch("/tmp/x", func() {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
	after, _, err := CountInotify()
	must(t, err)
	if after != instances-1 {
		t.Errorf("%d inotify instances after Close, want %d", after, instances-1)
	}
}

func TestRelativePathRefused(t *testing.T) {
	f := newFixture(t, Options{})
	if _, err := f.w.Watch("etc/passwd", func() {}); err == nil {
		t.Error("Watch of a relative path succeeded")
	}
}

func TestCancelFromCallback(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.path("f")
	c := newCounter()
	var (
		mu     sync.Mutex // guards cancel
		cancel func()
	)
	mu.Lock()
	cancel, err := f.w.Watch(p, func() {
		mu.Lock()
		defer mu.Unlock()
		cancel()
		c.fn()
	})
	mu.Unlock()
	must(t, err)
	must(t, os.WriteFile(p, nil, 0o644))
	c.wait(t, "creating the file")
	if got, want := f.w.Watches(), len(ancestors(f.root)); got != want {
		t.Errorf("Watches() = %d after cancel from the callback, want %d", got, want)
	}
}
