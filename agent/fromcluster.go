package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/yamlgraph"
	"golang.org/x/sys/unix"
)

// An agent run with --from-cluster keeps, under <prefix>/deploy:
//
//	current/           the running deploy's files: its graph.yaml and what
//	                   it refers to, always at this path, so that relative
//	                   sources resolve to the same absolute path from one
//	                   deploy to the next (unchanged resources keep their
//	                   identity)
//	next-<n>/          deploy n while it is checked, then (once swapped with
//	                   current, in one rename) the deploy it replaced
//	applied.json       the running deploy's record (deploy.Meta)
//	bundle-<n>.tar.gz  its bundle, checked against the record's hash when
//	                   a restart runs it from there
type fromCluster struct {
	root   string
	events chan fcEvent   // to the rebuild loop
	wg     sync.WaitGroup // rejoin
}

// DeployGraph is the graph file an agent run from the cluster runs.
func DeployGraph(prefix string) string {
	return filepath.Join(prefix, "deploy", "current", deploy.GraphName)
}

func (f *fromCluster) current() string { return filepath.Join(f.root, "current") }

// fcEvent is what the rebuild loop hears from the cluster: a new deploy
// to stage, or the cluster reached at last.
type fcEvent struct {
	deploy *staged
	joined *etcd.Agent
}

// staged is a deploy fetched and unpacked, on its way in.
type staged struct {
	meta    deploy.Meta
	bundle  []byte
	dir     string // next-<n>
	data    []byte // its graph.yaml
	swapped bool   // dir and current have been exchanged
	fresh   bool   // there was no current: dir became it
	done    chan error
}

// answer tells the deploy watch how staging s ended: nil once it runs.
func (s *staged) answer(err error) {
	if s != nil {
		s.done <- err
	}
}

func (s *staged) record() *deploy.Meta {
	if s == nil {
		return nil
	}
	return &s.meta
}

// firstGraph is what an agent run from the cluster starts with: the
// deploy it ran last (kept under --prefix), or, without one, an empty
// graph until the first deploy arrives.
func (r *runner) firstGraph(ctx context.Context) ([]byte, *yamlgraph.Graph, *engine.Graph, error) {
	f := r.fc
	if err := os.MkdirAll(f.root, 0o755); err != nil {
		return nil, nil, nil, &StartError{fmt.Errorf("deploy directory: %w", err)}
	}
	if ents, err := os.ReadDir(f.root); err == nil {
		for _, e := range ents { // left by a stop half-way through a swap
			if strings.HasPrefix(e.Name(), "next-") {
				os.RemoveAll(filepath.Join(f.root, e.Name()))
			}
		}
	}
	m, b, err := readCache(f.root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.log.Info("no deploy run here yet: waiting for the first")
	case err != nil:
		r.log.Warn("the cached deploy is not usable: waiting for a deploy", "err", err)
	default:
		s, err := f.unpack(m, b)
		if err == nil {
			if err = f.install(s); err == nil {
				os.RemoveAll(s.dir)
				var yg *yamlgraph.Graph
				var g *engine.Graph
				if yg, g, err = r.build(ctx, s.data); err == nil {
					r.log.Info("running the cached deploy", "deploy", m.Number, "hash", m.Hash)
					r.status.swapping(&m)
					r.status.swapped() // the engine starts with it
					r.status.want(m.Number, "")
					return s.data, yg, g, nil
				}
			}
		}
		r.log.Error("the cached deploy cannot run: waiting for a deploy", "deploy", m.Number, "err", err)
	}
	yg := &yamlgraph.Graph{}
	g, err := engine.Compile(ctx, &yg.Decl, r.log)
	if err != nil {
		return nil, nil, nil, &StartError{err}
	}
	return nil, yg, g, nil
}

// rejoin tries to reach the cluster until it does or ctx ends, and hands
// it to the rebuild loop: a run from the cached deploy while the cluster
// is unreachable.
func (r *runner) rejoin(ctx context.Context) {
	r.fc.wg.Go(func() {
		for delay := time.Second; ctx.Err() == nil; delay = min(2*delay, 10*time.Second) {
			a, err := r.startAgent(ctx)
			if err == nil {
				select {
				case r.fc.events <- fcEvent{joined: a}:
				case <-ctx.Done():
					a.Stop()
				}
				return
			}
			var inv *InvalidError
			switch {
			case ctx.Err() != nil:
				return
			case errors.As(err, &inv):
				r.log.Error("the cluster flags are wrong: running the cached deploy without the cluster", "deploy", r.status.runningDeploy().Number, "err", err)
				return
			}
			r.log.Warn("cluster unreachable: running the cached deploy", "deploy", r.status.runningDeploy().Number, "err", err, "in", delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
	})
}

// fcEvents is nil (never ready) unless the run is from the cluster.
func (r *runner) fcEvents() <-chan fcEvent {
	if r.fc == nil {
		return nil
	}
	return r.fc.events
}

// onFromCluster handles ev in the rebuild loop. For a deploy, it renders
// and validates the new graph where it was unpacked, then swaps its files
// in at the stable path; true: the loop builds and swaps in the graph.
func (r *runner) onFromCluster(ctx context.Context, ev fcEvent) (*staged, bool) {
	if ev.joined != nil {
		r.log.Info("cluster reached")
		r.attachCluster(ctx, ev.joined, r.yg)
		if err := r.follow(ctx); err != nil {
			r.log.Error("collect entries not followed", "err", err)
		}
		return nil, false
	}
	s := ev.deploy
	if _, _, err := r.buildAs(ctx, filepath.Join(s.dir, deploy.GraphName), s.data); err != nil {
		s.answer(err)
		return nil, false
	}
	// From the rename on, the running graph's file resources see the new
	// files (the new graph will run the same ones): what they change is
	// the deploy, not a drift.
	r.status.renaming()
	if err := r.fc.install(s); err != nil {
		r.status.swapped() // nothing was swapped: the running graph goes on
		s.answer(err)
		return nil, false
	}
	return s, true
}

// unstage puts the running deploy's files back after the graph of s was
// refused at its stable path.
func (r *runner) unstage(s *staged, err error) {
	if s == nil {
		return
	}
	if uerr := r.fc.uninstall(s); uerr != nil {
		r.log.Error("the running deploy's files could not be put back", "err", uerr)
	}
	r.status.swapped() // the running graph goes on
	s.answer(err)
}

// watchDeploys follows the deploy this host is to run, fetches each new
// one and hands it to the rebuild loop, then keeps the one swapped in on
// disk.
func (r *runner) watchDeploys(ctx context.Context, c *etcd.Client) {
	st := deploy.NewStore(c)
	for n := range st.Watch(ctx, r.cfg.Hostname) {
		r.status.want(n, "")
		if n == r.status.runningDeploy().Number {
			continue // the cached deploy, still current
		}
		r.log.Info("new deploy", "deploy", n)
		s, err := r.fetch(ctx, st, n)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("deploy not fetched: still running the previous one", "deploy", n, "err", err)
				r.status.want(n, err.Error())
			}
			continue
		}
		select {
		case r.fc.events <- fcEvent{deploy: s}:
		case <-ctx.Done():
			os.RemoveAll(s.dir)
			continue
		}
		select {
		case err = <-s.done:
		case <-ctx.Done():
			continue // the loop may still hold it: the next start cleans up
		}
		if err != nil {
			r.log.Error("deploy refused: still running the previous one", "deploy", n, "err", err)
			r.status.want(n, err.Error())
		} else if werr := writeCache(r.fc.root, s.meta, s.bundle); werr != nil {
			r.log.Error("the deploy runs but is not kept on disk: a restart without the cluster would not run it", "deploy", n, "err", werr)
		}
		os.RemoveAll(s.dir)
	}
}

// fetch gets deploy n (its hash checked) and unpacks it beside current.
func (r *runner) fetch(ctx context.Context, st *deploy.Store, n int64) (*staged, error) {
	var m deploy.Meta
	var b []byte
	var err error
	for delay := 100 * time.Millisecond; ; delay *= 2 {
		m, b, err = st.Get(ctx, n)
		if err == nil || errors.Is(err, deploy.ErrNotFound) || errors.Is(err, deploy.ErrCorrupt) || delay > 2*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
	if err != nil {
		return nil, err
	}
	return r.fc.unpack(m, b)
}

func (f *fromCluster) unpack(m deploy.Meta, b []byte) (*staged, error) {
	dir := filepath.Join(f.root, "next-"+strconv.FormatInt(m.Number, 10))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := deploy.Unpack(b, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data, err := readGraph(filepath.Join(dir, deploy.GraphName))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &staged{meta: m, bundle: b, dir: dir, data: data, done: make(chan error, 1)}, nil
}

// install exchanges s.dir and current in one rename (RENAME_EXCHANGE):
// current is never missing, and the file resources whose sources are in
// it see the rename and check again.
func (f *fromCluster) install(s *staged) error {
	cur := f.current()
	err := unix.Renameat2(unix.AT_FDCWD, s.dir, unix.AT_FDCWD, cur, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOENT): // the first deploy here
		if err := os.Rename(s.dir, cur); err != nil {
			return fmt.Errorf("install deploy: %w", err)
		}
		s.fresh = true
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS): // a file system without it
		if err := swapByRenames(s.dir, cur); err != nil {
			return fmt.Errorf("install deploy: %w", err)
		}
	default:
		return fmt.Errorf("install deploy: %w", err)
	}
	s.swapped = true
	return nil
}

// uninstall undoes install.
func (f *fromCluster) uninstall(s *staged) error {
	if !s.swapped {
		return nil
	}
	s.swapped = false
	cur := f.current()
	if s.fresh {
		return os.Rename(cur, s.dir)
	}
	err := unix.Renameat2(unix.AT_FDCWD, s.dir, unix.AT_FDCWD, cur, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = swapByRenames(s.dir, cur)
	}
	return err
}

// swapByRenames exchanges two directories in three renames.
func swapByRenames(a, b string) error {
	tmp := b + ".swap"
	if err := os.Rename(b, tmp); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		os.Rename(tmp, b)
		return err
	}
	return os.Rename(tmp, a)
}

func cacheBundle(root string, n int64) string {
	return filepath.Join(root, fmt.Sprintf("bundle-%d.tar.gz", n))
}

// writeCache keeps m and its bundle as the deploy a restart runs: the
// bundle first, then the record naming it, each written whole (temporary
// file, rename); older bundles go.
func writeCache(root string, m deploy.Meta, bundle []byte) error {
	rec, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeAtomic(cacheBundle(root, m.Number), bundle); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(root, "applied.json"), rec); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(root, "bundle-*.tar.gz"))
	for _, p := range old {
		if p != cacheBundle(root, m.Number) {
			os.Remove(p)
		}
	}
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readCache returns the deploy a previous run kept, its bundle checked
// against the record's hash.
func readCache(root string) (deploy.Meta, []byte, error) {
	rec, err := os.ReadFile(filepath.Join(root, "applied.json"))
	if err != nil {
		return deploy.Meta{}, nil, err
	}
	var m deploy.Meta
	if err := json.Unmarshal(rec, &m); err != nil {
		return deploy.Meta{}, nil, fmt.Errorf("applied.json: %w", err)
	}
	b, err := os.ReadFile(cacheBundle(root, m.Number))
	if err != nil {
		return deploy.Meta{}, nil, fmt.Errorf("the bundle of deploy %d: %w", m.Number, err)
	}
	if h := deploy.Hash(b); h != m.Hash {
		return deploy.Meta{}, nil, fmt.Errorf("the bundle of deploy %d hashes to %s, its record says %s", m.Number, h, m.Hash)
	}
	return m, b, nil
}
