// Package fswatch shares one inotify instance among everything in the process that watches paths, with one watch per directory however many paths in it are watched.
package fswatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// ErrClosed is returned by Watch and WatchTree after Close.
var ErrClosed = errors.New("fswatch: watcher closed")

// DefaultPollInterval is how often paths that could not be watched are
// polled when Options.PollInterval is zero.
const DefaultPollInterval = 2 * time.Second

// Options configure a Watcher.
type Options struct {
	Logger       *slog.Logger  // nil: slog.Default()
	PollInterval time.Duration // polling of paths that could not be watched; 0: DefaultPollInterval
}

// Watcher multiplexes one inotify instance to the callers interested in
// paths. A path is followed through every directory above it: the parent
// directory of a path reports its changes, the directories above report
// renames and removals of the parent, and when part of the path does not
// exist yet its nearest existing ancestor reports its creation.
type Watcher struct {
	fsn  *fsnotify.Watcher
	log  *slog.Logger
	poll time.Duration
	add  func(dir string) error // fsn.Add; tests replace it to simulate the watch limit

	cancel context.CancelFunc
	done   chan struct{} // closed when the event loop has returned

	mu       sync.Mutex           // guards the fields below
	closed   bool                 //
	dirs     map[string]*dirWatch // directory -> its watch
	interest map[string]*node     // path -> subscriptions that events naming it concern
	trees    int                  // number of tree subscriptions
	polling  map[*sub]struct{}    // subscriptions whose watches could not all be added
	logged   map[string]bool      // fallbacks already logged once
}

// dirWatch is one inotify watch on a directory, shared by the subscriptions
// that need it.
type dirWatch struct {
	path  string // the directory, one string that the subscriptions holding it share
	refs  int
	armed bool // the kernel holds a watch for it (false once the directory went away)
}

// node lists the subscriptions concerned by events that name one path.
type node struct { // a nil set is empty
	exact []*sub            // subscriptions to this very path (most paths have one: a slice is a fifth of a map's memory)
	above map[*sub]struct{} // subscriptions to a path below it (it is their ancestor)
	tree  map[*sub]struct{} // tree subscriptions rooted here
}

func (n *node) empty() bool { return len(n.exact)+len(n.above)+len(n.tree) == 0 }

// sub is one caller's interest in one path.
type sub struct {
	path string
	tree bool
	fn   func()
	dirs []string // directories whose watch this sub holds a reference on
	sig  string   // stat signature, while polling
}

// New starts a watcher with its own inotify instance. Most callers want
// Default; New is for tests and tools that need an instance of their own.
func New(opts Options) (*Watcher, error) {
	fsn, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("fswatch: %w", err)
	}
	w := &Watcher{
		fsn:      fsn,
		log:      opts.Logger,
		poll:     opts.PollInterval,
		done:     make(chan struct{}),
		dirs:     map[string]*dirWatch{},
		interest: map[string]*node{},
		polling:  map[*sub]struct{}{},
		logged:   map[string]bool{},
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if w.poll <= 0 {
		w.poll = DefaultPollInterval
	}
	w.add = fsn.Add
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.loop(ctx)
	return w, nil
}

var defaultWatcher = sync.OnceValues(func() (*Watcher, error) {
	return New(Options{})
})

// Default returns the process-wide watcher, created on first use and never
// closed.
func Default() (*Watcher, error) { return defaultWatcher() }

// Close stops the watcher and releases its inotify instance. Callbacks are
// not called after Close returns.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	err := w.fsn.Close()
	<-w.done
	w.mu.Lock()
	clear(w.dirs)
	clear(w.interest)
	clear(w.polling)
	w.mu.Unlock()
	return err
}

// Watch calls fn whenever path (a file or a directory, existing or not) may
// have changed: created, written, removed, renamed, its mode or owner
// changed, or a directory above it created, removed or renamed. For a
// directory, changes to its entries are not reported; use WatchTree.
//
// fn is called from the watcher's goroutine and must not block: it should
// only mark its caller dirty. cancel ends the interest; it may be called
// more than once, and from fn.
func (w *Watcher) Watch(path string, fn func()) (cancel func(), err error) {
	return w.subscribe(path, false, fn)
}

// WatchTree is Watch for a directory and everything below it, to any depth.
// Symbolic links inside the tree are not followed.
func (w *Watcher) WatchTree(path string, fn func()) (cancel func(), err error) {
	return w.subscribe(path, true, fn)
}

func (w *Watcher) subscribe(path string, tree bool, fn func()) (func(), error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("fswatch: %q is not an absolute path", path)
	}
	s := &sub{path: filepath.Clean(path), tree: tree, fn: fn}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	if n := w.nodeLocked(s.path); tree {
		n.tree = addSub(n.tree, s)
	} else {
		n.exact = append(n.exact, s)
	}
	for d := s.path; d != "/"; {
		d = filepath.Dir(d)
		n := w.nodeLocked(d)
		n.above = addSub(n.above, s)
	}
	if tree {
		w.trees++
	}
	w.armLocked(s)
	var once sync.Once
	return func() { once.Do(func() { w.unsubscribe(s) }) }, nil
}

// nodeLocked is the interest in path, made if there was none.
func (w *Watcher) nodeLocked(path string) *node {
	n := w.interest[path]
	if n == nil {
		n = &node{}
		w.interest[path] = n
	}
	return n
}

func addSub(m map[*sub]struct{}, s *sub) map[*sub]struct{} {
	if m == nil {
		m = make(map[*sub]struct{}, 1) // most paths have one subscriber of one sort: the others stay nil
	}
	m[s] = struct{}{}
	return m
}

// dropLocked removes s from the interest in path (its own, or one of its
// ancestors'), and the interest once nothing is left of it.
func (w *Watcher) dropLocked(path string, s *sub) {
	n := w.interest[path]
	if n == nil {
		return
	}
	if i := slices.Index(n.exact, s); i >= 0 {
		n.exact = slices.Delete(n.exact, i, i+1)
		if len(n.exact) == 0 {
			n.exact = nil
		}
	}
	delete(n.above, s)
	delete(n.tree, s)
	if n.empty() {
		delete(w.interest, path)
	}
}

func (w *Watcher) unsubscribe(s *sub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	// The paths subscribe gave s an interest in: its own and every
	// ancestor's, worked out again rather than kept with each sub.
	w.dropLocked(s.path, s)
	for d := s.path; d != "/"; {
		d = filepath.Dir(d)
		w.dropLocked(d, s)
	}
	if s.tree {
		w.trees--
	}
	delete(w.polling, s)
	w.releaseLocked(s.dirs)
	s.dirs = nil
}

// chain lists the directories whose watches s needs, top down: every
// directory above its path, and for a tree the path itself. The directories
// inside a tree are found by walking it as it is armed.
func (s *sub) chain() []string {
	var dirs []string
	for d := s.path; d != "/"; {
		d = filepath.Dir(d)
		dirs = append(dirs, d)
	}
	// top down
	for i, j := 0, len(dirs)-1; i < j; i, j = i+1, j-1 {
		dirs[i], dirs[j] = dirs[j], dirs[i]
	}
	if s.tree || len(dirs) == 0 {
		dirs = append(dirs, s.path)
	}
	return dirs
}

// armLocked (re)computes the watches s needs, adds the missing ones and
// releases those it no longer needs. A directory that does not exist ends
// the chain: its nearest existing ancestor reports its creation. A watch
// that cannot be added (the watch limit) puts s in polling mode.
func (w *Watcher) armLocked(s *sub) {
	var held []string
	failed := false
	reached := true
	for _, d := range s.chain() {
		ok, err := w.ensureLocked(d)
		if err != nil {
			failed = true
			w.fallbackLocked(s, d, err)
			continue
		}
		if !ok {
			reached = false
			break
		}
		held = append(held, w.dirs[d].path)
	}
	if s.tree && reached && !failed {
		_ = filepath.WalkDir(s.path, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.IsDir() {
				return nil // gone or unreadable: its parent reports what happens to it
			}
			if p == s.path {
				return nil
			}
			ok, aerr := w.ensureLocked(p)
			if aerr != nil {
				failed = true
				w.fallbackLocked(s, p, aerr)
				return fs.SkipAll
			}
			if ok {
				held = append(held, w.dirs[p].path)
			}
			return nil
		})
	}
	for _, d := range held {
		w.dirs[d].refs++
	}
	w.releaseLocked(s.dirs)
	s.dirs = held
	if failed {
		if _, ok := w.polling[s]; !ok {
			s.sig = signature(s)
			w.polling[s] = struct{}{}
		}
	} else {
		delete(w.polling, s)
	}
}

// ensureLocked makes sure the directory d has a watch. ok false means d is
// not (or no longer) a directory.
func (w *Watcher) ensureLocked(d string) (ok bool, err error) {
	dw := w.dirs[d]
	if dw != nil && dw.armed {
		return true, nil
	}
	fi, err := os.Stat(d)
	if err != nil || !fi.IsDir() {
		return false, nil
	}
	if err := w.add(d); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return false, nil
		}
		return false, err
	}
	if dw == nil {
		dw = &dirWatch{path: d}
		w.dirs[d] = dw
	}
	dw.armed = true
	return true, nil
}

func (w *Watcher) releaseLocked(dirs []string) {
	for _, d := range dirs {
		dw := w.dirs[d]
		dw.refs--
		if dw.refs > 0 {
			continue
		}
		if dw.armed {
			_ = w.fsn.Remove(d) // the kernel may have dropped it already
		}
		delete(w.dirs, d)
	}
}

// invalidateLocked forgets the watch on a directory that was removed or
// renamed away; the subscriptions holding it are re-armed by the caller.
func (w *Watcher) invalidateLocked(d string) {
	dw := w.dirs[d]
	if dw == nil || !dw.armed {
		return
	}
	_ = w.fsn.Remove(d) // a renamed directory keeps its watch in the kernel
	dw.armed = false
}

// fallbackLocked logs, once per kind of failure, that a watch could not be
// added and the path is polled instead.
func (w *Watcher) fallbackLocked(s *sub, dir string, err error) {
	key := "add"
	if errors.Is(err, syscall.ENOSPC) {
		key = "limit"
	}
	if w.logged[key] {
		return
	}
	w.logged[key] = true
	msg := "cannot add an inotify watch; polling the affected paths instead"
	if key == "limit" {
		msg = "inotify watch limit reached (fs.inotify.max_user_watches); polling the affected paths instead"
	}
	w.log.Warn(msg, "path", s.path, "dir", dir, "interval", w.poll, "err", err)
}

// loop is the watcher's goroutine: it dispatches events, handles queue
// overflows and polls the paths that could not be watched.
func (w *Watcher) loop(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(w.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsn.Events:
			if !ok {
				return
			}
			w.call(w.event(ev))
		case err, ok := <-w.fsn.Errors:
			if !ok {
				return
			}
			w.call(w.failure(err))
		case <-tick.C:
			w.call(w.pollOnce())
		}
	}
}

func (w *Watcher) call(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

const structural = fsnotify.Create | fsnotify.Remove | fsnotify.Rename

// event finds the subscriptions an event concerns, re-arms those whose
// directories changed, and returns their callbacks.
func (w *Watcher) event(ev fsnotify.Event) []func() {
	name := filepath.Clean(ev.Name)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
		w.invalidateLocked(name)
	}
	var fire, rearm []*sub
	if n := w.interest[name]; n != nil {
		fire = append(fire, n.exact...)
		if ev.Op&structural != 0 {
			for s := range n.above {
				fire = append(fire, s)
				rearm = append(rearm, s)
			}
		}
	}
	if w.trees > 0 {
		var trees []*sub
		for p := name; ; p = filepath.Dir(p) {
			if n := w.interest[p]; n != nil {
				for s := range n.tree {
					trees = append(trees, s)
				}
			}
			if p == "/" {
				break
			}
		}
		if len(trees) > 0 {
			fire = append(fire, trees...)
			// A directory created, removed or renamed inside a tree
			// changes the watches it needs.
			_, known := w.dirs[name]
			changed := known && ev.Op&structural != 0
			if !changed && ev.Op&fsnotify.Create != 0 {
				fi, err := os.Lstat(name)
				changed = err == nil && fi.IsDir()
			}
			if changed {
				rearm = append(rearm, trees...)
			}
		}
	}
	for _, s := range rearm {
		w.armLocked(s)
	}
	fns := make([]func(), len(fire))
	for i, s := range fire {
		fns[i] = s.fn
	}
	return fns
}

// failure handles an error from inotify. A queue overflow lost events: every
// directory is checked again, every subscription re-armed and called.
func (w *Watcher) failure(err error) []func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	if !errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Warn("inotify error", "err", err)
		return nil
	}
	if !w.logged["overflow"] {
		w.logged["overflow"] = true
		w.log.Warn("inotify queue overflowed (fs.inotify.max_queued_events); rescanning every watched path", "err", err)
	}
	for d := range w.dirs {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			w.invalidateLocked(d)
		}
	}
	subs := map[*sub]struct{}{}
	for _, n := range w.interest {
		for _, s := range n.exact {
			subs[s] = struct{}{}
		}
		for s := range n.tree {
			subs[s] = struct{}{}
		}
	}
	fns := make([]func(), 0, len(subs))
	for s := range subs {
		w.armLocked(s)
		fns = append(fns, s.fn)
	}
	return fns
}

// pollOnce retries the watches of polled subscriptions and calls those
// whose path changed since the last poll.
func (w *Watcher) pollOnce() []func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || len(w.polling) == 0 {
		return nil
	}
	var fns []func()
	for s := range w.polling {
		w.armLocked(s)
		if _, still := w.polling[s]; !still {
			w.log.Info("inotify watches restored; polling stopped", "path", s.path)
			fns = append(fns, s.fn)
			continue
		}
		if sig := signature(s); sig != s.sig {
			s.sig = sig
			fns = append(fns, s.fn)
		}
	}
	return fns
}

// signature sums up what a polled path looks like: for each entry, its
// inode, type, mode, owner, size and change time.
func signature(s *sub) string {
	var b []byte
	add := func(p string) {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			b = fmt.Appendf(b, "%s:-;", p)
			return
		}
		b = fmt.Appendf(b, "%s:%d:%o:%d:%d:%d:%d.%d:%d.%d;", p, st.Ino, st.Mode, st.Uid, st.Gid, st.Size,
			st.Ctim.Sec, st.Ctim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
	}
	if !s.tree {
		add(s.path)
		return string(b)
	}
	_ = filepath.WalkDir(s.path, func(p string, _ fs.DirEntry, err error) error {
		add(p)
		return nil
	})
	return string(b)
}

// Watches returns how many inotify watches the watcher holds: one per
// directory, however many paths in it are watched.
func (w *Watcher) Watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, dw := range w.dirs {
		if dw.armed {
			n++
		}
	}
	return n
}

// Polling returns how many watched paths are polled because their watches
// could not be added.
func (w *Watcher) Polling() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.polling)
}
