// Package agent runs a graph file: it loads and compiles it, runs it on the
// engine, swaps in each new valid version when the file changes, and, when
// the graph exports or collects resources, exchanges them with other hosts
// through etcd.
package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/facts"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/metrics"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// Config is what `mgmt run` asks for.
type Config struct {
	File     string
	Hostname string
	// Labels are the host's --label pairs (facts.ParseLabels): facts the
	// graph's templates and host selection see.
	Labels map[string]string
	// Version is mgmt's version, the version fact.
	Version string
	Prefix  string
	Noop    bool
	// ConvergedTimeout: exit once converged this long; negative: never.
	ConvergedTimeout time.Duration
	// Watch reloads the graph when File changes.
	Watch bool
	// FromCluster runs the deploys meant for this host (File unused): see
	// fromcluster.go.
	FromCluster bool
	// Graphviz, when set, receives the compiled graph as DOT each time one
	// is built; with GraphvizFilter "dot" it is also rendered to Graphviz+".png".
	Graphviz       string
	GraphvizFilter string
	// Cluster says how to reach the other hosts; see ClusterConfig.
	Cluster ClusterConfig
	// Report, when set, receives a JSON summary of the run at exit.
	Report string
	// Reload, when it delivers, makes the agent read the graph file again
	// (SIGHUP), even without --watch.
	Reload <-chan struct{}
	// Observer hears of every check; may be nil. With MetricsListen set,
	// the metrics server is the observer instead.
	Observer engine.Observer
	// MetricsListen, when set, serves Prometheus metrics at
	// http://MetricsListen/metrics for the run (--prometheus-listen).
	MetricsListen string
	// StopTimeout bounds the whole stop, from ctx ending until Run
	// returns; 0: DefaultStopTimeout.
	StopTimeout time.Duration
	Logger      *slog.Logger
	// Out, when set, receives the diffs of a noop run, each as a block
	// after its log line (engine.Config.Out).
	Out io.Writer
	// Tally, when set, is filled in as Run returns: how many resources
	// changed something and, in noop, would (--detailed-exitcodes).
	Tally *Tally
}

// Tally counts the resources that changed something during a run, and
// those that would have (noop).
type Tally struct {
	Changed, Pending int
}

// tally fills t (if set) from the engine's counts.
func tally(t *Tally, eng *engine.Engine) {
	if t == nil || eng == nil {
		return
	}
	c, p := eng.Tally()
	t.Changed += c
	t.Pending += p
}

// InvalidError is a graph that was refused: nothing of it was applied.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// StartError is a run that could not start although its graph was valid:
// etcd could not start or be reached, the metrics address was taken.
// Nothing of the graph was applied.
type StartError struct{ Err error }

func (e *StartError) Error() string { return "could not start: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// DefaultStopTimeout bounds a whole stop: resources, the metrics server
// and etcd, from the moment the run's context ends until Run returns.
const DefaultStopTimeout = 2 * time.Second

// engineStopTimeout is the part of the stop the engine's vertices get at
// most; the metrics server and etcd get the rest (an etcd member stops in
// about 100 ms).
const engineStopTimeout = 1500 * time.Millisecond

// rebuildWindow: collected resources that keep changing (another host
// putting its exports one by one) rebuild the graph at most once per
// window; the first change after a quiet window rebuilds at once.
const rebuildWindow = 100 * time.Millisecond

// Load parses and compiles a graph file for no host in particular: its
// templates are checked against every fact name, every resource is kept
// (yamlgraph.Parse). Any problem is an *InvalidError.
func Load(ctx context.Context, file string, log *slog.Logger) (*yamlgraph.Graph, *engine.Graph, error) {
	return LoadFor(ctx, file, nil, log)
}

// LoadFor parses and compiles a graph file as host sees it (nil: as Load
// does). Any problem is an *InvalidError.
func LoadFor(ctx context.Context, file string, host *facts.Data, log *slog.Logger) (*yamlgraph.Graph, *engine.Graph, error) {
	yg, err := yamlgraph.ParseFileWith(file, yamlgraph.Options{Host: host})
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	g, err := engine.Compile(ctx, &yg.Decl, log)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	return yg, g, nil
}

// runner holds what one run has: the engine, the last valid graph file and
// the resources collected from other hosts.
type runner struct {
	cfg     Config
	log     *slog.Logger
	eng     *engine.Engine
	metrics *metrics.Server  // nil without MetricsListen
	source  []byte           // the last valid graph file
	yg      *yamlgraph.Graph // source, parsed
	cluster *cluster         // nil until the graph needs other hosts
	watch   *exportsWatch    // other hosts' exports of the kinds yg collects; nil: none
	snap    []etcd.Export    // the newest snapshot watch delivered
	window  time.Duration    // see rebuildWindow
	status  *hostStatus      // this host's status record; the engine's observer
	fc      *fromCluster     // nil unless cfg.FromCluster
	kv      *clusterKV       // the cluster's store, for the engine's resources
}

// Run loads cfg.File and runs it until ctx ends or the converged timeout
// passes. It returns an *InvalidError when the first load fails, a
// *StartError when the run could not start (nothing applied in either
// case) and an *engine.RunError when resources failed. With cfg.Report
// set, the report is written whatever the outcome.
func Run(ctx context.Context, cfg Config) (err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.FromCluster {
		cfg.File, cfg.Watch = DeployGraph(cfg.Prefix), false
	}
	if abs, err := filepath.Abs(cfg.File); err == nil {
		cfg.File = abs
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	started := time.Now()
	r := &runner{cfg: cfg, log: log, window: rebuildWindow, status: newHostStatus(nil, cfg.Version), kv: newClusterKV(cfg.FromCluster)}
	if cfg.FromCluster {
		r.fc = &fromCluster{root: filepath.Dir(filepath.Dir(cfg.File)), events: make(chan fcEvent)}
	}
	defer func() {
		if cfg.Report == "" {
			return
		}
		if werr := writeReport(cfg, r.eng, started, err); werr != nil {
			log.Error("report", "file", cfg.Report, "err", werr)
		}
	}()
	var data []byte
	var yg *yamlgraph.Graph
	var g *engine.Graph
	if r.fc != nil {
		data, yg, g, err = r.firstGraph(ctx)
	} else if data, err = readGraph(cfg.File); err != nil {
		return &InvalidError{err}
	} else {
		yg, g, err = r.build(ctx, data)
	}
	if err != nil {
		return err
	}
	r.source, r.yg = data, yg

	// Everything started from here on is stopped by stop, within one
	// deadline counted from the moment runCtx ends.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopBegan := make(chan time.Time, 1)
	context.AfterFunc(runCtx, func() { stopBegan <- time.Now() })
	defer func() {
		cancel()
		r.stop((<-stopBegan).Add(cfg.StopTimeout))
	}()
	if cfg.MetricsListen != "" {
		ms, err := metrics.Listen(cfg.MetricsListen, log)
		if err != nil {
			return &StartError{err}
		}
		r.metrics = ms
		cfg.Observer = ms
	}
	if r.fc != nil && r.source != nil {
		// The cached deploy runs at once; the cluster is reached beside it.
		r.rejoin(runCtx)
	} else if r.fc != nil || cfg.Cluster.wanted() || needsCluster(yg) {
		if err := r.startCluster(runCtx, yg); err != nil {
			return err
		}
		if err := r.follow(runCtx); err != nil {
			return &StartError{err}
		}
	}

	r.status.next = cfg.Observer
	r.eng = engine.New(engine.Config{
		Hostname: cfg.Hostname, Prefix: cfg.Prefix, Logger: log,
		Noop: cfg.Noop, ConvergedTimeout: cfg.ConvergedTimeout, Observer: r.status, Out: cfg.Out,
		StopTimeout: min(engineStopTimeout, cfg.StopTimeout*3/4), KV: r.kv,
	})
	r.status.setEngine(r.eng)
	var fileChanged <-chan struct{}
	if cfg.Watch {
		ch, stop, err := watchFile(cfg.File)
		if err != nil {
			log.Warn("graph file not watched: changes need a restart", "file", cfg.File, "err", err)
		} else {
			defer stop()
			fileChanged = ch
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.rebuildLoop(runCtx, fileChanged)
	}()
	err = r.eng.Run(runCtx, g)
	cancel()
	<-done
	tally(cfg.Tally, r.eng)
	return err
}

// stop ends what the run started besides the engine (which has stopped
// by now): the metrics server and etcd, side by side, giving up on
// either at deadline, when the process is about to exit anyway.
func (r *runner) stop(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	if r.metrics != nil {
		wg.Go(func() {
			if err := r.metrics.Shutdown(ctx); err != nil {
				r.log.Warn("metrics server stopped at the stop deadline", "err", err)
			}
		})
	}
	wg.Go(func() {
		if r.fc != nil {
			// rejoin ends with the run's context, but may be inside a
			// request to a cluster that does not answer.
			if !waitBy(ctx, r.fc.wg.Wait) {
				r.log.Warn("joining the cluster still under way at the stop deadline: leaving it")
				return
			}
		}
		if r.cluster != nil {
			r.cluster.close(ctx)
		}
	})
	wg.Wait()
}

// waitBy runs wait and reports whether it returned before ctx ended.
func waitBy(ctx context.Context, wait func()) bool {
	done := make(chan struct{})
	go func() { defer close(done); wait() }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// HostData gathers the facts of the host cfg describes (its Hostname,
// Labels and Version): what its graph's templates see.
func HostData(ctx context.Context, cfg Config) (*facts.Data, error) {
	f, err := facts.Gather(ctx, facts.Options{Hostname: cfg.Hostname, Labels: cfg.Labels, Version: cfg.Version})
	if err != nil {
		return nil, fmt.Errorf("facts: %w", err)
	}
	d := f.Data()
	return &d, nil
}

// build renders data with the host's facts, gathered again for every
// build (an address may have changed), merges in the collected resources,
// then compiles.
func (r *runner) build(ctx context.Context, data []byte) (*yamlgraph.Graph, *engine.Graph, error) {
	return r.buildAs(ctx, r.cfg.File, data)
}

// buildAs is build of data as the graph file named file (where its
// relative paths start).
func (r *runner) buildAs(ctx context.Context, file string, data []byte) (*yamlgraph.Graph, *engine.Graph, error) {
	host, err := HostData(ctx, r.cfg)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	yg, err := yamlgraph.ParseWith(file, data, yamlgraph.Options{Host: host})
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	for _, d := range yg.Selection.Dropped {
		r.log.Debug("edge dropped on this host", "edge", d.Name, "source", d.Source, "why", d.Why)
	}
	decl := yg.Decl
	remote := r.decodeCollected(r.snap, collectPatterns(yg))
	decl.Vertices = append(decl.Vertices[:len(decl.Vertices):len(decl.Vertices)], r.collectedVertices(yg, remote)...)
	g, err := engine.Compile(ctx, &decl, r.log)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	writeGraphviz(r.cfg, g, r.log)
	return yg, g, nil
}

// rebuildLoop swaps in a new graph whenever the file changes (or a reload
// is asked for) or other hosts' exports do. An invalid file is logged and
// the running graph kept. A new graph file also takes effect for the
// cluster at once: its exports are published, its collect entries
// followed, and etcd started if this is the first graph to need it.
//
// Exports that keep changing are coalesced: a snapshot only replaces the
// previous one, and they rebuild the graph at most once per r.window.
func (r *runner) rebuildLoop(ctx context.Context, fileChanged <-chan struct{}) {
	defer r.unfollow()
	var (
		remoteDirty bool             // r.snap is newer than the running graph
		lastRemote  time.Time        // when a rebuild last took r.snap in
		wait        <-chan time.Time // the rest of the window, while remoteDirty
		retry       <-chan time.Time // following the collect entries failed
	)
	for {
		data, fromFile := r.source, false
		var pending *staged // a deploy whose files are in place, its graph not yet swapped in
		select {
		case <-ctx.Done():
			return
		case <-fileChanged:
			d, ok := r.reread()
			if !ok || bytes.Equal(d, r.source) {
				continue // gone for a moment (an editor's rename), or no change
			}
			data, fromFile = d, true
		case <-r.cfg.Reload:
			r.log.Info("reload asked for", "file", r.cfg.File)
			d, ok := r.reread()
			if !ok {
				continue
			}
			data, fromFile = d, true
		case snap, ok := <-r.snaps():
			if !ok { // the client was closed under the watch
				r.watch = nil
				retry = time.After(time.Second)
				continue
			}
			r.snap, remoteDirty = snap, true
		case ev := <-r.fcEvents():
			s, ok := r.onFromCluster(ctx, ev)
			if !ok {
				continue
			}
			data, fromFile, pending = s.data, true, s
		case <-wait:
			wait = nil
		case <-retry:
			retry = nil
			if err := r.follow(ctx); err != nil {
				r.log.Error("collect entries not followed; trying again", "err", err, "in", time.Second)
				retry = time.After(time.Second)
			}
			continue
		}
		if !fromFile {
			if !remoteDirty || wait != nil {
				continue
			}
			if d := r.window - time.Since(lastRemote); d > 0 {
				wait = time.After(d)
				continue
			}
		}
		lastRemote, remoteDirty = time.Now(), false
		yg, g, err := r.build(ctx, data)
		if err != nil {
			r.log.Error("new graph refused: still running the previous one", "file", r.cfg.File, "err", err)
			r.unstage(pending, err)
			continue
		}
		if !bytes.Equal(data, r.source) {
			r.log.Info("graph file changed: swapping graphs", "file", r.cfg.File)
			r.source, r.yg = data, yg
			r.joinIfNeeded(ctx, yg)
			if r.cluster != nil {
				r.cluster.publish(yg)
			}
			if err := r.follow(ctx); err != nil {
				r.log.Error("collect entries not followed; trying again", "err", err, "in", time.Second)
				retry = time.After(time.Second)
			}
		}
		if !fromFile {
			r.log.Debug("other hosts' exports changed: swapping graphs", "exports", len(r.snap))
		}
		r.status.swapping(pending.record())
		r.eng.Swap(g)
		r.status.swapped()
		if pending != nil {
			r.log.Info("deploy swapped in", "deploy", pending.meta.Number)
		}
		pending.answer(nil)
	}
}

func (r *runner) reread() ([]byte, bool) {
	d, err := readGraph(r.cfg.File)
	if err != nil {
		r.log.Warn("graph file unreadable: still running the previous graph", "err", err)
		return nil, false
	}
	return d, true
}

// readGraph reads a graph file, refusing one too large to be a graph a
// person wrote before reading it.
func readGraph(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read graph: %w", err)
	}
	if fi.Size() > yamlgraph.MaxFileSize {
		return nil, fmt.Errorf("read graph %s: %d bytes: larger than %d MiB, not a graph a person wrote", path, fi.Size(), yamlgraph.MaxFileSize>>20)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read graph: %w", err)
	}
	return data, nil
}

// watchFile reports changes of the graph file on the returned channel.
func watchFile(file string) (<-chan struct{}, func(), error) {
	w, err := fswatch.Default()
	if err != nil {
		return nil, nil, err
	}
	changed := make(chan struct{}, 1)
	cancel, err := w.Watch(file, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return changed, cancel, nil
}

func writeGraphviz(cfg Config, g *engine.Graph, log *slog.Logger) {
	if cfg.Graphviz == "" {
		return
	}
	var buf bytes.Buffer
	if err := g.WriteDOT(&buf); err != nil {
		log.Warn("graphviz", "err", err)
		return
	}
	if err := os.WriteFile(cfg.Graphviz, buf.Bytes(), 0o644); err != nil {
		log.Warn("graphviz: write", "err", err)
		return
	}
	if cfg.GraphvizFilter == "" {
		return
	}
	out := cfg.Graphviz + ".png"
	cmd := exec.Command(cfg.GraphvizFilter, "-Tpng", "-o", out, cfg.Graphviz)
	if msg, err := cmd.CombinedOutput(); err != nil {
		log.Warn("graphviz: render", "filter", cfg.GraphvizFilter, "err", fmt.Errorf("%w: %s", err, bytes.TrimSpace(msg)))
	}
}
