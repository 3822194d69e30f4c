package pkg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	var cancels []func()
	defer func() {
		r.watching.Store(false)
		for _, c := range cancels {
			c()
		}
	}()
	cancels = append(cancels, c.Subscribe(func(packagekit.Event) { dirty() }))
	watch := func(path string, tree bool) error {
		p := filepath.Join(dbRoot, path)
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			return nil // not this machine's package manager
		}
		w := fsw.Watch
		if tree {
			w = fsw.WatchTree
		}
		cancel, err := w(p, dirty)
		if err != nil {
			return fmt.Errorf("pkg: watching %s: %w", p, err)
		}
		cancels = append(cancels, cancel)
		return nil
	}
	for _, f := range dbFiles {
		if err := watch(f.path, f.tree); err != nil {
			return err
		}
	}
	for _, m := range r.all() {
		if c := m.stateClass(); c == StateNewest || c == "version" {
			if err := watch(listsDir, true); err != nil {
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
