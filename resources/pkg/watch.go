package pkg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
)

// dbRoot is prefixed to the package database paths Watch follows. Tests
// that drive a test host's PackageKit from outside set it to the host's
// root (/proc/PID/root).
var dbRoot = ""

// A package database changes whenever a package is installed or removed,
// by PackageKit or by hand (dpkg, apt-get, rpm, pacman): Watch follows the
// files of the databases this machine has.
var dbFiles = []struct {
	path string
	tree bool
}{
	{"/var/lib/dpkg/status", false},
	{"/var/lib/rpm/rpmdb.sqlite", false},
	{"/var/lib/rpm/Packages", false},
	{"/var/lib/pacman/local", true},
}

// listsDir holds apt's package lists: they change when `apt-get update`
// brings new versions, which matters to newest and to exact versions.
const listsDir = "/var/lib/apt/lists"

// Watch reports a change of the package database (through the process's
// one inotify instance) and PackageKit's own signals: UpdatesChanged,
// RepoListChanged, and the end of transactions started by other clients.
// It never polls. It returns an error if the bus connection closes.
func (r *Pkg) Watch(ctx context.Context, ev engine.Events) error {
	c, err := r.client(ctx)
	if err != nil {
		return err
	}
	fsw, err := fswatch.Default()
	if err != nil {
		return fmt.Errorf("pkg: %w", err)
	}
	dirty := func() {
		r.gen.Add(1)
		ev.Dirty()
	}
	// UpdatesChanged follows the resource's own transactions too; the
	// database files' events are told apart by their stamp (settled).
	foreign := func() {
		r.foreign.Add(1)
		dirty()
	}
	var cancels []func()
	defer func() {
		r.watching.Store(false)
		for _, c := range cancels {
			c()
		}
	}()
	cancels = append(cancels, c.Subscribe(func(e packagekit.Event) {
		if e == packagekit.UpdatesChanged {
			dirty()
		} else {
			foreign()
		}
	}))
	watch := func(path string, tree bool, fn func()) error {
		p := filepath.Join(dbRoot, path)
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			return nil // not this machine's package manager
		}
		w := fsw.Watch
		if tree {
			w = fsw.WatchTree
		}
		cancel, err := w(p, fn)
		if err != nil {
			return fmt.Errorf("pkg: watching %s: %w", p, err)
		}
		cancels = append(cancels, cancel)
		return nil
	}
	for _, f := range dbFiles {
		if err := watch(f.path, f.tree, dirty); err != nil {
			return err
		}
	}
	for _, m := range r.all() {
		if c := m.stateClass(); c == StateNewest || c == "version" {
			if err := watch(listsDir, true, foreign); err != nil {
				return err
			}
			break
		}
	}
	r.watching.Store(true)
	ev.Running()
	select {
	case <-ctx.Done():
		return nil
	case <-c.Done():
		return fmt.Errorf("pkg: %w", packagekit.ErrClosed)
	}
}

// dbStamp identifies the state of the package database files this machine
// has (path, inode, size, modification time of each); "" when it has none.
// dpkg and rpm replace or rewrite their files on every change.
func dbStamp() string {
	var b strings.Builder
	for _, f := range dbFiles {
		p := filepath.Join(dbRoot, f.path)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%s:%d:%d:%d;", p, ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// appliedState is what an apply left: the database's stamp after its last
// transaction, and the count of foreign events when its check began.
type appliedState struct {
	stamp   string
	foreign uint64
}

// own follows the package database across one check's transactions: it
// stays true while the database changed only while a transaction that
// changes packages of the check's own was running (PackageKit holds the
// package manager's lock through it, so no one else's change can land
// then).
type own struct {
	last string // the stamp when the check began, then after each of its transactions
	ok   bool
}

func newOwn() *own {
	s := dbStamp()
	return &own{last: s, ok: s != ""}
}

// before is called before a transaction that changes packages: a change
// since the check began or since the check's last transaction is not the
// check's own.
func (o *own) before() {
	if dbStamp() != o.last {
		o.ok = false
	}
}

// after is called when such a transaction has ended.
func (o *own) after() { o.last = dbStamp() }

// settled reports whether what the last apply left is still in place,
// without asking PackageKit: every change it asked for was made, the
// package database is as its last transaction left it, and no foreign
// event (another client's transaction, RepoListChanged, apt's lists) came
// since its check began. The events of the apply's own transactions (the
// database files being written, PackageKit's UpdatesChanged) then call
// for no Resolve.
func (r *Pkg) settled() bool {
	st := r.applied.Load()
	return st != nil && r.foreign.Load() == st.foreign && dbStamp() == st.stamp
}
