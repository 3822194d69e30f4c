package multihost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// dirLog follows directories with inotify: the names each holds now, and
// every name ever created in it, so that a test can say a file never
// appeared, not only that it is absent at the end. Names starting with a
// dot (the file resource's temporary files) are left out.
type dirLog struct {
	w       *fsnotify.Watcher
	changed chan struct{} // one slot: something changed since the last look
	done    chan struct{} // closed when the event loop has returned

	mu    sync.Mutex                 // guards now, ever
	now   map[string]map[string]bool // dir -> names present
	ever  map[string]map[string]bool // dir -> names ever seen
	debug []string                   // overflows and watch errors, for the failure message
}

// newDirLog follows dirs, which must exist; it is closed in tb.Cleanup.
func newDirLog(tb testing.TB, dirs ...string) *dirLog {
	tb.Helper()
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		tb.Fatal(err)
	}
	l := &dirLog{
		w:       w,
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
		now:     map[string]map[string]bool{},
		ever:    map[string]map[string]bool{},
	}
	for _, d := range dirs {
		d = filepath.Clean(d)
		l.now[d], l.ever[d] = map[string]bool{}, map[string]bool{}
		if err := w.Add(d); err != nil {
			w.Close()
			tb.Fatalf("watch %s: %v", d, err)
		}
	}
	// The watches are in place: what is there now is the starting point.
	for _, d := range dirs {
		if err := l.rescan(filepath.Clean(d)); err != nil {
			w.Close()
			tb.Fatal(err)
		}
	}
	go l.loop()
	tb.Cleanup(func() {
		w.Close()
		<-l.done
	})
	return l
}

func (l *dirLog) loop() {
	defer close(l.done)
	for {
		select {
		case ev, ok := <-l.w.Events:
			if !ok {
				return
			}
			l.apply(ev)
		case err, ok := <-l.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: read every directory again.
			l.mu.Lock()
			l.debug = append(l.debug, err.Error())
			dirs := make([]string, 0, len(l.now))
			for d := range l.now {
				dirs = append(dirs, d)
			}
			l.mu.Unlock()
			for _, d := range dirs {
				l.rescan(d)
			}
		}
	}
}

func (l *dirLog) apply(ev fsnotify.Event) {
	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	if strings.HasPrefix(name, ".") {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now, ok := l.now[dir]
	if !ok {
		return
	}
	switch {
	case ev.Has(fsnotify.Create):
		now[name] = true
		l.ever[dir][name] = true
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		delete(now, name)
	default:
		return // writes, chmods: the names are the same
	}
	l.pingLocked()
}

func (l *dirLog) rescan(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := map[string]bool{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			now[e.Name()] = true
			l.ever[dir][e.Name()] = true
		}
	}
	l.now[dir] = now
	l.pingLocked()
	return nil
}

func (l *dirLog) pingLocked() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// names returns the sorted names dir holds now.
func (l *dirLog) names(dir string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedKeys(l.now[filepath.Clean(dir)])
}

// everSeen returns the sorted names ever seen in dir.
func (l *dirLog) everSeen(dir string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedKeys(l.ever[filepath.Clean(dir)])
}

// holds reports whether every dir in want holds exactly its names.
func (l *dirLog) holds(want map[string][]string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for d, names := range want {
		if !slices.Equal(sortedKeys(l.now[filepath.Clean(d)]), names) {
			return false
		}
	}
	return true
}

var errTimeout = errors.New("timed out")

// waitHolds waits until every dir in want holds exactly its (sorted) names
// and returns when that was seen: within a millisecond of the inotify
// event that completed it. It gives up after limit.
func (l *dirLog) waitHolds(want map[string][]string, limit time.Duration) (time.Time, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	// A safety net only: every change pings; this covers a lost event.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if l.holds(want) {
			return time.Now(), nil
		}
		select {
		case <-l.changed:
		case <-tick.C:
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("%w after %v: %s", errTimeout, limit, l.diff(want))
		}
	}
}

// diff describes how the directories differ from want.
func (l *dirLog) diff(want map[string][]string) string {
	var b strings.Builder
	dirs := make([]string, 0, len(want))
	for d := range want {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	bad := 0
	for _, d := range dirs {
		got := l.names(d)
		if slices.Equal(got, want[d]) {
			continue
		}
		if bad++; bad > 5 {
			fmt.Fprintf(&b, "... ")
			break
		}
		var missing, extra []string
		for _, n := range want[d] {
			if !slices.Contains(got, n) {
				missing = append(missing, n)
			}
		}
		for _, n := range got {
			if !slices.Contains(want[d], n) {
				extra = append(extra, n)
			}
		}
		fmt.Fprintf(&b, "%s: %d names, missing %v, extra %v; ", d, len(got), missing, extra)
	}
	l.mu.Lock()
	if len(l.debug) > 0 {
		fmt.Fprintf(&b, "watch errors: %v", l.debug)
	}
	l.mu.Unlock()
	return b.String()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
