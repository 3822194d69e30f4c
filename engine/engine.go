package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Config is how an engine runs.
type Config struct {
	Hostname string
	Prefix   string
	Logger   *slog.Logger
	// Noop makes every resource report what it would change, changing nothing.
	Noop bool
	// ConvergedTimeout: with a value >= 0, Run returns once the graph has had
	// nothing to do for that long; negative: run until the context ends.
	ConvergedTimeout time.Duration
	// StopTimeout bounds how long Run waits for vertices to stop; 2 s if 0.
	StopTimeout time.Duration
	// Observer, if set, hears of every check-and-apply and of the graph
	// converging (metrics).
	Observer Observer
	// Out, if set, receives the diffs of the changes a noop run finds, each
	// as its own block of lines after the log line of its change (the log
	// cannot hold a multi-line value readably).
	Out io.Writer
	// KV, if set, is the cluster's store, handed to resources in Env.
	KV KV
}

// Observer is told what the engine does. Its methods are called from
// vertex goroutines and must not block.
type Observer interface {
	// Checked reports one check-and-apply of a resource of kind.
	Checked(kind string, changed bool, err error, took time.Duration)
	// Converged reports the graph becoming converged (true) or not.
	Converged(converged bool)
}

// Engine runs one graph at a time, swapping in new ones without disturbing
// the vertices they have in common.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	semas semas

	// applyMu is held while a graph is applied, so that applications never
	// interleave; it is taken before mu.
	applyMu sync.Mutex

	mu        sync.Mutex // guards everything below
	runCtx    context.Context
	latest    *Graph           // the newest graph asked for (by Swap, or Run's own)
	seq       uint64           // counts the graphs asked for; latest is number seq
	applied   uint64           // the number of the graph the vertices run
	nodes     map[string]*node // by key: String() and identity
	order     []*node          // topological order
	converged int              // nodes whose convergedLocked is true
	gaveUp    int              // nodes that failed with no retries left
	busy      int
	quiet     bool     // converged, or nothing more can happen: the converged clock runs
	gone      []Report // what removed vertices did, for the summary
	// workers counts the worker goroutines holding a slot (at most
	// maxWorkers); queue holds the poked vertices waiting for one, in the
	// order they were poked.
	workers int
	queue   []*node

	wake chan struct{} // one slot: a state changed, the tracker looks again

	outMu sync.Mutex // guards writes to cfg.Out, so that diffs never interleave
}

// New returns an engine; Run starts it.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 2 * time.Second
	}
	return &Engine{
		cfg:   cfg,
		log:   cfg.Logger,
		nodes: map[string]*node{},
		wake:  make(chan struct{}, 1),
	}
}

func key(v *Vertex) string { return v.String() + "\x00" + v.id }

// Failure is a vertex that had failed when the run ended.
type Failure struct {
	Res string
	Err error
}

// RunError reports the vertices that failed; Run returns it when the run
// ended with failures.
type RunError struct {
	Failures []Failure
}

func (e *RunError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = fmt.Sprintf("%s: %v", f.Res, f.Err)
	}
	return fmt.Sprintf("%d resource(s) failed: %s", len(e.Failures), strings.Join(parts, "; "))
}

// Run starts g and blocks until ctx ends or, with a converged timeout, until
// the graph has been quiet that long. It returns nil when every vertex was in
// its desired state at the end, a *RunError listing the failed ones
// otherwise.
func (e *Engine) Run(ctx context.Context, g *Graph) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	e.runCtx = ctx
	if e.latest == nil { // any Swap, even one before Run, is newer than g
		e.latest, e.seq = g, 1
	}
	e.mu.Unlock()
	e.apply()

	done := make(chan struct{})
	go func() {
		defer close(done)
		e.track(ctx, cancel)
	}()
	<-ctx.Done()
	<-done
	return e.stop()
}

// track watches the converged state and ends the run when the converged
// timeout has passed.
func (e *Engine) track(ctx context.Context, cancel context.CancelFunc) {
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-e.wake:
		case <-fire:
			e.mu.Lock()
			quiet := e.quiet
			e.mu.Unlock()
			if quiet {
				e.log.Info("converged timeout reached: exiting", "timeout", e.cfg.ConvergedTimeout)
				cancel()
				continue
			}
		}
		e.mu.Lock()
		was := e.quiet
		e.quiet = e.quietLocked()
		now, all := e.quiet, e.converged == len(e.nodes)
		e.mu.Unlock()
		if now != was && e.cfg.Observer != nil {
			e.cfg.Observer.Converged(now && all)
		}
		if now != was {
			switch {
			case now && all:
				e.log.Info("graph converged")
			case now:
				e.log.Warn("graph stalled: failed resources hold back the rest")
			default:
				e.log.Debug("graph working")
			}
		}
		if e.cfg.ConvergedTimeout < 0 {
			continue
		}
		if now && !was {
			if timer != nil {
				timer.Stop()
			}
			timer = time.NewTimer(e.cfg.ConvergedTimeout)
			fire = timer.C
		} else if !now && timer != nil {
			timer.Stop()
			timer, fire = nil, nil
		}
	}
}

// quietLocked: every vertex is converged, or failed for good, or waits on
// one that is; nothing is under way.
func (e *Engine) quietLocked() bool {
	if e.converged == len(e.nodes) {
		return true
	}
	if e.busy > 0 || e.gaveUp == 0 {
		return false // with nothing given up, every vertex not converged has work ahead
	}
	// n.settled, of the vertices before n in this walk (parents first):
	// a node's field, not a map, as State asks every 200 ms
	for _, n := range e.order {
		n.settled = false
		switch {
		case n.convergedLocked():
			n.settled = true
		case n.busy || n.retrying:
			return false
		case n.gaveUp:
			n.settled = true
		default:
			blocked := false
			for _, p := range n.parents {
				if !p.convergedLocked() && p.settled && n.waitsOnLocked(p) {
					blocked = true
					break
				}
			}
			if blocked {
				// a group that can go on without the members that wait
				// has work ahead, unless it owes exactly those
				if held, wait := n.heldLocked(); !wait && !maps.Equal(held, n.held) {
					blocked = false
				}
			}
			if !blocked {
				return false
			}
			n.settled = true
		}
	}
	return true
}

// changedLocked updates the converged count after n's state changed and
// wakes the tracker.
func (e *Engine) changedLocked(n *node) {
	if c := n.convergedLocked(); c != n.countedConv {
		n.countedConv = c
		if c {
			e.converged++
		} else {
			e.converged--
		}
	}
	if n.gaveUp != n.countedGaveUp {
		n.countedGaveUp = n.gaveUp
		if n.gaveUp {
			e.gaveUp++
		} else {
			e.gaveUp--
		}
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// dirtyLocked records that n owes a check. An event from the resource's own
// watch also gives a vertex that had given up a new set of retries.
func (e *Engine) dirtyLocked(n *node, fromWatch bool) {
	n.dirty, n.held = true, nil // owed for a reason of its own: what depends on it waits
	n.notWatched = n.notWatched || !fromWatch
	if fromWatch && n.busy {
		n.eventInCheck = true
	}
	if n.st == stateOK {
		n.st = statePending
	}
	if fromWatch && n.gaveUp {
		n.gaveUp = false
		n.retries = n.v.Meta.Retry
	}
	e.changedLocked(n)
	e.pokeLocked(n)
}

// pokeLocked asks n for a pass of process: it starts n's worker, or tells
// the running one to go round again. Bursts collapse into one pass.
func (e *Engine) pokeLocked(n *node) {
	switch {
	case n.stopped || n.ctx == nil:
	case n.working:
		n.again = true
	default:
		n.working = true
		e.queue = append(e.queue, n)
		e.spawnLocked()
	}
}

// maxWorkers bounds the worker goroutines that hold a slot. A graph of
// 10,000 vertices otherwise starts 10,000 workers at once (its first pass
// pokes every vertex), each with a stack of 4 to 8 KiB: 80 MB for checks
// that two CPUs run a few at a time anyway.
const maxWorkers = 64

// slowCheck is how long a pass may hold its worker's slot. A check that
// blocks longer (a command, a download, a rate limit, a semaphore) gives its
// slot up, so that a slow vertex never delays another's check by more than
// this: checks still run in parallel however many block.
const slowCheck = 10 * time.Millisecond

// worker is one worker goroutine; slot says whether it still counts
// against maxWorkers (guarded by Engine.mu).
type worker struct{ slot bool }

// spawnLocked starts workers for the queued vertices while slots are free.
func (e *Engine) spawnLocked() {
	for e.workers < maxWorkers && len(e.queue) > 0 {
		e.workers++
		go e.work(&worker{slot: true}, e.popLocked())
	}
}

func (e *Engine) popLocked() *node {
	n := e.queue[0]
	e.queue[0] = nil
	e.queue = e.queue[1:]
	if len(e.queue) == 0 {
		e.queue = nil // let the backing array go
	}
	return n
}

// releaseLocked gives w's slot to the next queued vertex.
func (e *Engine) releaseLocked(w *worker) {
	if w.slot {
		w.slot = false
		e.workers--
		e.spawnLocked()
	}
}

// Swap replaces the running graph with g. Vertices whose kind, name and
// parameters are unchanged keep running untouched; removed or changed ones
// stop; new ones start.
//
// The newest graph wins: the one of the last Swap to be called, whether
// it came before Run, while Run was starting or after. Run's own graph is
// older than any Swap's. Once Run has started, Swap returns when the newest
// graph asked for is the one running (it may be a later Swap's).
func (e *Engine) Swap(g *Graph) {
	e.mu.Lock()
	e.latest = g
	e.seq++
	running := e.runCtx != nil
	e.mu.Unlock()
	if running { // else Run applies the newest graph when it starts
		e.apply()
	}
}

// apply makes the vertices run the newest graph asked for, unless they
// already do or the run is ending.
func (e *Engine) apply() {
	e.applyMu.Lock()
	defer e.applyMu.Unlock()
	e.mu.Lock()
	ctx, g, seq := e.runCtx, e.latest, e.seq
	if seq == e.applied || ctx.Err() != nil {
		e.mu.Unlock()
		return
	}
	e.semas.setCounts(g.semas) // for acquisitions from now on
	want := make(map[string]*Vertex, len(g.Order()))
	for _, v := range g.Order() {
		want[key(v)] = v
	}
	var removed []*node
	for k, n := range e.nodes {
		if _, keep := want[k]; !keep {
			removed = append(removed, n)
		}
	}
	e.mu.Unlock()

	for _, n := range removed {
		n.cancel()
	}
	for _, n := range removed {
		<-n.done
		n.log.Info("stopped: no longer in the graph")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied = seq
	for _, n := range removed {
		r := n.reportLocked()
		r.Removed = true
		e.gone = append(e.gone, r)
		delete(e.nodes, key(n.v))
		if n.countedConv {
			e.converged--
		}
		if n.countedGaveUp {
			e.gaveUp--
		}
	}
	if ctx.Err() != nil {
		// The run is ending: stop has taken (or will take) its list of
		// vertices to wait for, and must not miss one started now.
		e.order = slices.DeleteFunc(e.order, func(n *node) bool { _, ok := e.nodes[key(n.v)]; return !ok })
		return
	}
	var added []*node
	byVertex := make(map[*Vertex]*node, len(want))
	for _, v := range g.Order() {
		k := key(v)
		n, ok := e.nodes[k]
		if !ok {
			n = e.newNode(v)
			e.nodes[k] = n
			added = append(added, n)
		}
		byVertex[v] = n
	}
	e.order = e.order[:0]
	for _, v := range g.Order() {
		n := byVertex[v]
		n.parents, n.children, n.notify, n.tails, n.heads, n.pairs = n.parents[:0], n.children[:0], nil, nil, nil, nil
		e.order = append(e.order, n)
	}
	for _, v := range g.Order() {
		n := byVertex[v]
		for _, c := range g.Children(v) {
			cn := byVertex[c]
			n.children = append(n.children, cn)
			cn.parents = append(cn.parents, n)
			ed, _ := g.Edge(v, c)
			if ed != nil && ed.Notify {
				if n.notify == nil {
					n.notify = map[*node]bool{}
				}
				n.notify[cn] = true
			}
			if ed != nil && len(ed.Tails) > 0 {
				if cn.tails == nil {
					cn.tails = map[*node][]string{}
				}
				cn.tails[n] = ed.Tails
			}
			if ed != nil && len(ed.Heads) > 0 {
				if cn.heads == nil {
					cn.heads = map[*node][]string{}
				}
				cn.heads[n] = ed.Heads
			}
			if ed != nil && len(ed.Pairs) > 0 {
				if cn.pairs == nil {
					cn.pairs = map[*node][][2]string{}
				}
				cn.pairs[n] = ed.Pairs
			}
		}
	}
	if len(added) > 0 || len(removed) > 0 {
		e.log.Info("graph loaded", "vertices", len(e.nodes), "started", len(added), "stopped", len(removed))
	}
	for _, n := range added {
		e.start(ctx, n)
	}
	for _, n := range e.order {
		e.changedLocked(n)
		e.pokeLocked(n)
	}
}

func (e *Engine) newNode(v *Vertex) *node {
	log := slog.New(resHandler{e.log.Handler(), v})
	resLog := log
	if v.Meta.Sensitive {
		resLog = slog.New(resHandler{maskHandler{e.log.Handler()}, v})
	}
	return &node{
		v:          v,
		log:        log,
		resLog:     resLog,
		noop:       e.cfg.Noop || v.Meta.Noop,
		done:       make(chan struct{}),
		bucket:     newBucket(v.Meta.Limit, v.Meta.Burst),
		dirty:      true,
		notWatched: true,
		retries:    v.Meta.Retry,
	}
}

// start starts n's goroutine, which runs Init and then Watch until ctx
// ends. Check-and-apply runs on a worker goroutine when the vertex is poked
// (see maxWorkers), and none is left once the graph is idle, so a converged
// vertex costs one goroutine. The resource is closed once Watch has
// returned and no worker is left.
func (e *Engine) start(ctx context.Context, n *node) {
	ctx, n.cancel = context.WithCancel(ctx)
	n.ctx = ctx
	n.checkCtx = WithRecorder(ctx, &n.rec)
	n.watchedCtx = context.WithValue(n.checkCtx, watchedKey{}, true)
	n.refreshCtx = WithRecorder(ctx, &n.refreshRec)
	go e.vertex(ctx, n)
}

// vertex is n's goroutine: Init, Watch until ctx ends, then the close. Its
// frame and watch's stay under the resource's Watch for the vertex's whole
// life, so both keep their cold paths in functions of their own: an idle
// vertex then fits in the 2 KiB stack a goroutine starts with, where it
// took 4 KiB (TestIdleVertexStack).
func (e *Engine) vertex(ctx context.Context, n *node) {
	err := e.init(n)
	if err == nil {
		err = e.watch(ctx, n)
	}
	if err != nil {
		e.failUntilStop(ctx, n, err)
	}
	e.finish(n)
}

// failUntilStop fails n for good and waits for the run to stop it.
//
//go:noinline
func (e *Engine) failUntilStop(ctx context.Context, n *node, err error) {
	e.mu.Lock()
	n.failForGoodLocked(err)
	e.changedLocked(n)
	e.mu.Unlock()
	<-ctx.Done()
}

// finish waits for n's worker, and for a check it abandoned, then closes
// the resource.
//
//go:noinline
func (e *Engine) finish(n *node) {
	e.mu.Lock()
	n.stopped = true
	var idle chan struct{}
	if n.working {
		idle = make(chan struct{})
		n.idle = idle
	}
	e.mu.Unlock()
	if idle != nil {
		<-idle
	}
	e.mu.Lock() // no worker is left to arm a retry timer
	if n.retry != nil {
		n.retry.Stop()
		n.retry, n.retrying = nil, false
	}
	e.mu.Unlock()
	// The worker is gone; a check-and-apply it abandoned after its meta
	// timeout may still run, and the resource is closed only after it.
	if n.stuck != nil {
		e.awaitStuck(n)
	}
	if err := safeCall("Close", n.v.Res.Close); err != nil {
		n.log.Warn("close failed", "err", err)
	}
	close(n.done)
}

// awaitStuck waits for an abandoned check-and-apply of n to return, saying
// so if it has not after the stop timeout (Run leaves the vertex then).
func (e *Engine) awaitStuck(n *node) {
	t := time.NewTimer(e.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-n.stuck:
		return
	case <-t.C:
		n.log.Warn("a check-and-apply abandoned after its meta timeout has still not returned: closing the resource once it does", "waited", e.cfg.StopTimeout)
	}
	<-n.stuck
}

// work runs process until no poke is left, then ends.
// work runs process for n, again while n is poked meanwhile, then for the
// queued vertices while w holds its slot.
func (e *Engine) work(w *worker, n *node) {
	for {
		slow := time.AfterFunc(slowCheck, func() {
			e.mu.Lock()
			e.releaseLocked(w)
			e.mu.Unlock()
		})
		e.process(n.ctx, n)
		slow.Stop()
		e.mu.Lock()
		if n.again && !n.stopped {
			n.again = false
			e.mu.Unlock()
			continue
		}
		n.working = false
		if n.idle != nil {
			close(n.idle)
			n.idle = nil
		}
		if w.slot && len(e.queue) > 0 {
			n = e.popLocked()
			e.mu.Unlock()
			continue
		}
		e.releaseLocked(w)
		e.mu.Unlock()
		return
	}
}

func (e *Engine) init(n *node) error {
	in, ok := n.v.Res.(Initer)
	if !ok {
		return nil
	}
	env := Env{
		Kind: n.v.Kind, Name: n.v.Name, Hostname: e.cfg.Hostname, Prefix: e.cfg.Prefix,
		Logger: n.resLog, Noop: e.cfg.Noop || n.v.Meta.Noop, KV: e.cfg.KV,
	}
	if err := safeCall("Init", func() error { return in.Init(env) }); err != nil {
		return maskErr(n.v.Meta.Sensitive, fmt.Errorf("init: %w", err))
	}
	return nil
}

func (n *node) failForGoodLocked(err error) {
	n.st, n.lastErr, n.gaveUp, n.running, n.failedMembers = stateFailed, err, true, true, nil
	n.log.Error("failed", "err", err)
}

// watch runs the resource's Watch (or polls, with meta poll) until ctx
// ends. A Watch that fails is started again per the retry meta parameters.
//
// An error is the engine's own part of watching (a poll ticker) breaking:
// only this vertex fails.
func (e *Engine) watch(ctx context.Context, n *node) error {
	ev := events{e: e, n: n}
	if n.v.Meta.Poll > 0 {
		return safeCall("watch", func() error { poll(ctx, n, ev); return nil })
	}
	retries := n.v.Meta.Retry
	for {
		err := callWatch(ctx, n.v.Res, ev)
		if ctx.Err() != nil {
			return nil
		}
		if again, err := e.watchEnded(ctx, n, err, &retries); err != nil || !again {
			return err
		}
	}
}

// callWatch is safeCall of r.Watch without a closure's frame in between.
func callWatch(ctx context.Context, r Res, ev Events) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = panicError("Watch", p)
		}
	}()
	return r.Watch(ctx, ev)
}

// poll marks n dirty every meta poll interval until ctx ends.
//
//go:noinline
func poll(ctx context.Context, n *node, ev events) {
	ev.Running()
	t := time.NewTicker(n.v.Meta.PollEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ev.e.mu.Lock()
			n.notWatched = true // a poll: the resource's watch saw nothing
			ev.e.dirtyLocked(n, true)
			ev.e.mu.Unlock()
		}
	}
}

// watchEnded handles a Watch that returned while n was running: it fails n
// for good once the retries are spent, or waits the retry delay. It
// reports whether to start Watch again; an error is its own panic.
//
//go:noinline
func (e *Engine) watchEnded(ctx context.Context, n *node, err error, retries *int) (again bool, perr error) {
	perr = safeCall("watch", func() error { again = e.watchFailed(ctx, n, err, retries); return nil })
	return again, perr
}

func (e *Engine) watchFailed(ctx context.Context, n *node, err error, retries *int) bool {
	if err == nil {
		err = errors.New("Watch returned while the vertex was running")
	}
	err = maskErr(n.v.Meta.Sensitive, fmt.Errorf("watch: %w", err))
	if *retries == 0 {
		e.mu.Lock()
		n.failForGoodLocked(err)
		e.changedLocked(n)
		e.mu.Unlock()
		return false
	}
	if *retries > 0 {
		*retries--
	}
	n.log.Warn("watch failed; restarting it", "err", err)
	return sleepCtx(ctx, n.v.Meta.RetryDelay())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// process runs one check-and-apply of n if it owes one and every parent is
// in its desired state.
func (e *Engine) process(ctx context.Context, n *node) {
	e.mu.Lock()
	if !n.running || n.busy || n.retrying || n.gaveUp || !(n.dirty || n.refresh) {
		e.mu.Unlock()
		return
	}
	held, wait := n.heldLocked()
	if wait {
		e.mu.Unlock() // that parent pokes us when it is done
		return
	}
	refresh, refreshBy := n.refresh, n.refreshBy
	checkCtx := n.checkCtx
	if !n.notWatched && !refresh {
		checkCtx = n.watchedCtx
	}
	if held != nil {
		checkCtx = context.WithValue(checkCtx, heldKey{}, held)
	}
	n.dirty, n.refresh, n.refreshBy, n.busy, n.notWatched, n.held = false, false, nil, true, false, nil
	n.eventInCheck = false
	e.busy++
	e.changedLocked(n)
	e.mu.Unlock()

	apply := !n.noop
	start := time.Now()
	var changed bool
	n.rec.take(false) // what a check abandoned after its timeout reported late
	err := safeCall("check-and-apply", func() error {
		var err error
		changed, err = e.checkApply(checkCtx, n, apply, refresh, refreshBy)
		return err
	})
	took := time.Since(start)
	err = maskErr(n.v.Meta.Sensitive, err)
	changes, dropped, members := n.rec.takeAll(n.v.Meta.Sensitive)
	if o := e.cfg.Observer; o != nil && ctx.Err() == nil {
		o.Checked(n.v.Kind, changed && apply, err, took)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	n.busy = false
	e.busy--
	if held != nil {
		// the members left out are owed a check, of all members (a
		// parent's recovery pokes this vertex)
		n.held, n.dirty, n.notWatched = held, true, true
	}
	n.stats.Checks++
	n.stats.Duration += took
	if ctx.Err() != nil || n.gaveUp {
		// ending, or failed for good meanwhile (its watch broke): that
		// failure stands
		e.changedLocked(n)
		return
	}
	if err != nil {
		// What a failed check reported may not have happened: it is not
		// kept, and the failure is what the log and report show. Only a
		// group's members that did not fail (their changes happened) are
		// kept, and their change dirties the children, which run once the
		// group has recovered.
		if applied := appliedChanges(err, changes); changed && apply && len(applied) > 0 {
			n.stats.Changes++
			e.logChanges(n, "changed", applied, 0, took)
			n.keepLocked(applied, 0)
			for _, m := range memberErrors(err) {
				delete(members, m.Res)
			}
			n.keepMembersLocked(members)
			e.dirtyChildrenLocked(n)
		} else if changed && len(applied) > 0 {
			// noop: what the check found of the others stands as what
			// it would change
			for _, m := range memberErrors(err) {
				delete(members, m.Res)
			}
			n.stats.Pending++
			e.logChanges(n, "would change", applied, 0, took)
			n.pending, n.pendingDropped, n.pendingNow, n.pendingMembers = applied, 0, true, members
			n.wouldRefreshLocked()
		}
		n.st, n.lastErr, n.notWatched = stateFailed, err, true
		n.failedMembers = nil
		if ms := memberErrors(err); len(ms) > 0 {
			n.failedMembers = make(map[string]bool, len(ms))
			for _, m := range ms {
				n.failedMembers[m.Res] = true
			}
		}
		for _, c := range n.children {
			// those that depend only on members that did not fail go on,
			// and groups check their members that do not depend on n
			e.pokeLocked(c)
		}
		n.refresh = n.refresh || refresh
		n.refreshBy = appendNew(n.refreshBy, refreshBy...)
		n.stats.Failures++
		switch {
		case n.retries == 0 && n.eventInCheck && !n.lastChance:
			// The world changed while the check failed: what it saw may
			// be gone. One more check, once between two successes, so
			// that a resource whose failures signal their own events
			// does not loop.
			n.lastChance = true
			d := lastChanceDelay
			if n.v.Meta.Retry != 0 {
				// the spacing the user asked between its checks; with
				// retry 0 its delay spaced nothing, and a year of it
				// would hold a converged-timeout run for that year
				d = max(n.v.Meta.RetryDelay(), lastChanceDelay)
			}
			n.log.Warn("failed; an event came during the check: checking once more", "err", err, "delay_ms", d.Milliseconds())
			e.retryLaterLocked(ctx, n, d)
		case n.retries == 0:
			n.gaveUp = true
			n.log.Error("failed; no retries left", "err", err)
		default:
			if n.retries > 0 {
				n.retries--
			}
			n.log.Warn("failed; will retry", "err", err, "retries_left", n.retries, "delay_ms", n.v.Meta.Delay)
			e.retryLaterLocked(ctx, n, n.v.Meta.RetryDelay())
		}
		e.changedLocked(n)
		return
	}
	wasFailed := n.st == stateFailed
	n.st, n.lastErr, n.retries, n.failedMembers, n.lastChance = stateOK, nil, n.v.Meta.Retry, nil, false
	if !changed {
		n.pending, n.pendingDropped, n.pendingNow, n.pendingMembers = nil, 0, false, nil // repaired by hand: nothing pending any more
	}
	switch {
	case changed && apply:
		n.stats.Changes++
		e.logChanges(n, "changed", changes, dropped, took)
		n.keepLocked(changes, dropped)
		n.keepMembersLocked(members)
		e.dirtyChildrenLocked(n)
	case changed:
		n.stats.Pending++
		e.logChanges(n, "would change", changes, dropped, took)
		n.pending, n.pendingDropped, n.pendingNow, n.pendingMembers = changes, dropped, true, members
		n.wouldRefreshLocked()
	case wasFailed:
		n.log.Info("recovered")
	}
	for _, c := range n.children {
		e.pokeLocked(c)
	}
	e.changedLocked(n)
}

// lastChanceDelay is the least wait before the one more check that an event
// during a vertex's last failing check earns: the change under way settles.
const lastChanceDelay = 100 * time.Millisecond

// retryLaterLocked checks n again after d.
func (e *Engine) retryLaterLocked(ctx context.Context, n *node, d time.Duration) {
	n.retrying = true
	var timer *time.Timer
	timer = time.AfterFunc(d, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if n.retry != timer {
			return // stopped, or replaced
		}
		n.retry, n.retrying = nil, false
		if ctx.Err() == nil {
			e.dirtyLocked(n, false)
		}
	})
	n.retry = timer
}

// dirtyChildrenLocked marks n's children dirty after a change of n, and
// owes a refresh to those it notifies.
func (e *Engine) dirtyChildrenLocked(n *node) {
	for _, c := range n.children {
		c.dirty, c.notWatched, c.held = true, true, nil // checked again, whole
		if n.notify[c] {
			c.refresh = true
			c.refreshBy = appendNew(c.refreshBy, n.v.String())
		}
		e.changedLocked(c)
	}
}

// appliedChanges returns, of the changes a group's failed check reported,
// those of the members that did not fail: nil when err is not the failure
// wouldRefreshLocked tells n's children through a notify edge that n
// would change: noop dirties no child, but a refresh it would cause is a
// change it would make. A kind that does not refresh (no Refresher)
// would not change: applying, its refresh does nothing.
func (n *node) wouldRefreshLocked() {
	for c := range n.notify {
		if _, ok := c.v.Res.(Refresher); ok && !slices.Contains(c.wouldRefreshBy, n.v.String()) {
			c.wouldRefreshBy = append(c.wouldRefreshBy, n.v.String())
			c.log.Info("would change", "property", "refresh", "why", "notified by "+n.v.String()+", which would change")
		}
	}
}

// of some members (engine.MemberError).
func appliedChanges(err error, cs []Change) []Change {
	ms := memberErrors(err)
	if len(ms) == 0 {
		return nil
	}
	failed := make(map[string]bool, len(ms))
	for _, m := range ms {
		failed[m.Res] = true
	}
	var out []Change
	for _, c := range cs {
		if c.Res != "" && !failed[c.Res] {
			out = append(out, c)
		}
	}
	return out
}

// checkApply calls the resource, with the meta rate limit, semaphores and
// time limit, and a refresh when one is owed (by the vertices refreshBy).
func (e *Engine) checkApply(ctx context.Context, n *node, apply, refresh bool, refreshBy []string) (changed bool, err error) {
	if err := n.bucket.wait(ctx); err != nil {
		return false, err
	}
	if len(n.v.Meta.Sema) > 0 {
		release, err := e.semas.acquire(ctx, n.v.Meta.Sema)
		if err != nil {
			return false, err
		}
		defer release()
	}
	if t := n.v.Meta.TimeLimit(); t > 0 {
		changed, err = n.checkApplyWithin(ctx, apply, t)
	} else {
		err = safeCall("CheckApply", func() error {
			var err error
			changed, err = n.v.Res.CheckApply(ctx, apply)
			return err
		})
	}
	if err != nil {
		if memberErrors(err) != nil {
			return changed, err // a group: the members that did not fail were applied
		}
		return false, err
	}
	if refresh && apply {
		if r, ok := n.v.Res.(Refresher); ok {
			var refreshed bool
			rec := &n.refreshRec
			rec.take(false)
			err = safeCall("Refresh", func() error {
				var err error
				refreshed, err = r.Refresh(n.refreshCtx)
				return err
			})
			if err != nil {
				return changed, fmt.Errorf("refresh: %w", err)
			}
			if refreshed {
				changed = true
				// What the refresh did, with why it happened: the kind
				// cannot know which vertex refreshed it.
				why := "refreshed by " + strings.Join(refreshBy, ", ")
				cs, _ := rec.take(false)
				if len(cs) == 0 {
					cs = []Change{{Property: "refresh"}}
				}
				for _, c := range cs {
					if c.Why == "" {
						c.Why = why
					} else {
						c.Why += "; " + why
					}
					Changed(ctx, c)
				}
			}
		}
	}
	return changed, nil
}

// appendNew appends to list the names it does not hold yet.
func appendNew(list []string, names ...string) []string {
	for _, s := range names {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// logChanges logs each change of one check of n at info, as "changed" or
// "would change"; a diff follows its line on cfg.Out, when set, in noop.
// A kind that reported nothing gets one line all the same.
func (e *Engine) logChanges(n *node, msg string, cs []Change, dropped int, took time.Duration) {
	if len(cs) == 0 {
		n.log.Info(msg, "took", took.Round(time.Microsecond))
		return
	}
	for _, c := range cs {
		log := n.log
		if c.Res != "" {
			// A group's member: the line is about the member, as it
			// would be if the member were not grouped.
			log = e.log.With("res", c.Res)
		}
		attrs := make([]any, 0, 8)
		attrs = append(attrs, "property", c.Property)
		if c.From != "" {
			attrs = append(attrs, "from", c.From)
		}
		if c.To != "" {
			attrs = append(attrs, "to", c.To)
		}
		if c.Why != "" {
			attrs = append(attrs, "why", c.Why)
		}
		diff := c.Diff != "" && e.cfg.Out != nil && msg == "would change"
		if diff {
			e.outMu.Lock()
		}
		log.Info(msg, attrs...)
		if diff {
			d := c.Diff
			if !strings.HasSuffix(d, "\n") {
				d += "\n"
			}
			_, _ = io.WriteString(e.cfg.Out, d)
			e.outMu.Unlock()
		}
	}
	if dropped > 0 {
		n.log.Info(msg, "property", "...", "why", fmt.Sprintf("%d more changes not shown", dropped))
	}
}

// stuckGrace is how long a check-and-apply may overrun its meta timeout
// (ignoring its context) before the vertex stops waiting for it.
var stuckGrace = time.Second

// checkApplyWithin runs CheckApply with a time limit. A resource that
// ignores its context and hangs is left behind after stuckGrace: the vertex
// fails, and its next check first waits for the stuck one to return, so one
// resource never runs twice at once.
func (n *node) checkApplyWithin(ctx context.Context, apply bool, limit time.Duration) (bool, error) {
	if n.stuck != nil {
		select {
		case <-n.stuck:
			n.stuck = nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	cctx, cancel := context.WithTimeout(ctx, limit)
	type result struct {
		changed bool
		err     error
	}
	ch := make(chan result, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		var r result
		r.err = safeCall("CheckApply", func() error {
			var err error
			r.changed, err = n.v.Res.CheckApply(cctx, apply)
			return err
		})
		if r.err != nil && cctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			r.err = fmt.Errorf("timed out after %v (meta timeout): %w", limit, r.err)
		}
		ch <- r
	}()
	t := time.NewTimer(limit + stuckGrace)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.changed, r.err
	case <-t.C:
		n.stuck = done
		return false, fmt.Errorf("timed out after %v (meta timeout) and did not stop: left running", limit)
	}
}

// stop waits for every vertex to stop, at most StopTimeout, and sums up
// the run.
func (e *Engine) stop() error {
	e.mu.Lock()
	nodes := make([]*node, 0, len(e.nodes))
	for _, n := range e.nodes {
		nodes = append(nodes, n)
	}
	e.mu.Unlock()
	deadline := time.NewTimer(e.cfg.StopTimeout)
	defer deadline.Stop()
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-deadline.C:
			e.log.Warn("vertices still stopping after the stop timeout; leaving them", "timeout", e.cfg.StopTimeout)
			return e.summary()
		}
	}
	return e.summary()
}

func (e *Engine) summary() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var fails []Failure
	for _, n := range e.order {
		if n.lastErr == nil || n.st != stateFailed {
			continue
		}
		// A group whose members failed: each failed member is a failure
		// of its own; the members that were applied are not.
		if ms := memberErrors(n.lastErr); len(ms) > 0 {
			for _, m := range ms {
				fails = append(fails, Failure{Res: m.Res, Err: maskErr(n.v.Meta.Sensitive, m.Err)})
			}
			continue
		}
		fails = append(fails, Failure{Res: n.v.String(), Err: n.lastErr})
	}
	if len(fails) == 0 {
		return nil
	}
	sort.Slice(fails, func(i, j int) bool { return fails[i].Res < fails[j].Res })
	return &RunError{Failures: fails}
}
