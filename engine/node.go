package engine

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"
)

// state is where a vertex stands, as its dependents see it.
type state int

const (
	statePending state = iota // not checked yet, or drift seen and not repaired
	stateOK                   // last check-and-apply succeeded
	stateFailed               // last check-and-apply failed; a retry may follow
)

// node is the engine's running vertex: its goroutines, its queue of work and
// its state. Fields below mu are guarded by Engine.mu.
type node struct {
	v      *Vertex
	log    *slog.Logger // the engine's lines about the vertex
	resLog *slog.Logger // the kind's own: masked when the vertex is sensitive
	cancel context.CancelFunc
	ctx    context.Context // the vertex's own; set by start
	done   chan struct{}   // closed once the resource is closed
	bucket *bucket         // meta limit/burst; nil when unlimited
	stuck  chan struct{}   // a timed-out check still running; only the worker uses it
	// The recorders of the vertex's checks and refreshes, and the contexts
	// that carry them, made once: a check allocates nothing to report.
	// One check runs at a time; process empties them after each.
	rec, refreshRec      changeList
	checkCtx, refreshCtx context.Context
	watchedCtx           context.Context // checkCtx, for a check that only the watch asked for (OnlyWatched)

	// guarded by Engine.mu
	working        bool          // a worker goroutine runs process
	again          bool          // poked while working: one more pass
	stopped        bool          // Watch has returned: start no worker
	idle           chan struct{} // closed when the worker ends after stopped
	parents        []*node
	children       []*node
	notify         map[*node]bool // children reached through a notify edge
	running        bool           // Watch said Running (or polling started)
	dirty          bool           // a check is owed
	notWatched     bool           // owed for another reason than the vertex's own watch (first check, parent, retry, poll, failure)
	refresh        bool           // a notify edge asked for a refresh
	refreshBy      []string       // the parents whose changes asked for it
	busy           bool           // CheckApply under way
	st             state
	retries        int         // failures left before the vertex gives up; -1: forever
	retrying       bool        // a retry timer is armed
	retry          *time.Timer // that timer; stopped when the vertex stops
	gaveUp         bool        // failed with no retries left; waits for a new event
	eventInCheck   bool        // an event of its own watch came during the check under way
	lastChance     bool        // since its latest success, a failed check has had its one more check for such an event
	lastErr        error
	failedMembers  map[string]bool       // of a group whose latest check failed only for some members: those
	tails          map[*node][]string    // parent → the members of that group parent this vertex depends on (none: all of it)
	heads          map[*node][]string    // parent → the members of this group that depend on it (none: all of them)
	pairs          map[*node][][2]string // group parent → which of its members reaches which of this group's (none: any to any)
	held           map[string]bool       // of a group: the members its latest check left out (their parents had failed); the group owes them a check
	stats          Stats
	changes        []Change // what the checks of the run changed, the latest MaxChangesKept
	dropped        int      // changes left out of changes
	pending        []Change // noop: what the latest check would change
	pendingDropped int
	pendingMembers map[string]bool // of a group: the members its latest noop check would change, all of them (their changes may be dropped)
	changedMembers map[string]bool // of a group: the members its checks changed
	pendingNow     bool            // noop: the latest check found something to change
	noop           bool            // --noop or meta noop: never applies
	wouldRefreshBy []string        // noop: parents whose changes would refresh this vertex
	settled        bool            // quietLocked's mark, of its latest walk
	// heldCountLocked's marks, of its latest walk: all of n is held back
	// (heldAll), or those members of a group (heldSome)
	heldAll  bool
	heldSome map[string]bool
	// what the engine's counters include; changedLocked keeps them true
	countedConv, countedGaveUp bool
}

// Stats is what a vertex did during the run.
type Stats struct {
	Checks   int
	Changes  int
	Pending  int // noop checks that found something to change
	Failures int
	Duration time.Duration // time spent in check-and-apply
}

// keepLocked adds the changes of one check to those the report lists,
// keeping the latest MaxChangesKept.
func (n *node) keepLocked(cs []Change, dropped int) {
	n.dropped += dropped
	n.changes = append(n.changes, cs...)
	if extra := len(n.changes) - MaxChangesKept; extra > 0 {
		n.dropped += extra
		n.changes = append(n.changes[:0:0], n.changes[extra:]...)
	}
}

// keepMembersLocked adds the members of a group that a check changed.
func (n *node) keepMembersLocked(ms map[string]bool) {
	for m := range ms {
		if n.changedMembers == nil {
			n.changedMembers = map[string]bool{}
		}
		n.changedMembers[m] = true
	}
}

// converged: nothing owed, nothing under way.
func (n *node) convergedLocked() bool {
	return n.running && n.st == stateOK && !n.dirty && !n.refresh && !n.busy && !n.retrying
}

// events is what a node hands its resource's Watch.
type events struct {
	e *Engine
	n *node
}

func (ev events) Running() {
	ev.e.mu.Lock()
	defer ev.e.mu.Unlock()
	if !ev.n.running {
		ev.n.running = true
		ev.e.changedLocked(ev.n)
		ev.e.pokeLocked(ev.n)
	}
}

func (ev events) Dirty() {
	ev.e.mu.Lock()
	defer ev.e.mu.Unlock()
	ev.e.dirtyLocked(ev.n, true)
}

// safeCall runs f, turning a panic into an error so that a broken resource
// fails its own vertex, not the process.
func safeCall(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(what, r)
		}
	}()
	return f()
}

func panicError(what string, r any) error {
	return fmt.Errorf("%s panicked: %v\n%s", what, r, debug.Stack())
}

// bucket is a token bucket for meta limit/burst.
type bucket struct {
	mu     sync.Mutex // guards tokens, last
	rate   float64    // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	if rate <= 0 || math.IsInf(rate, 1) { // 0 or .inf: unlimited
		return nil
	}
	b := float64(burst)
	if b < 1 {
		b = 1
	}
	return &bucket{rate: rate, burst: b, tokens: b, last: time.Now()}
}

// wait takes one token, sleeping until one is there or ctx ends.
func (b *bucket) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens--
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// semas holds the named semaphores of meta sema, shared by the whole graph.
// The count of a name is the running graph's (setCounts, at each swap):
// acquisitions after a swap use the new count; those held keep their place.
type semas struct {
	mu sync.Mutex // guards m
	m  map[string]*sema
}

type sema struct {
	held, count int
	wake        chan struct{} // closed and replaced when held or count change
}

func (s *semas) getLocked(name string) *sema {
	if s.m == nil {
		s.m = map[string]*sema{}
	}
	x, ok := s.m[name]
	if !ok {
		x = &sema{count: 1, wake: make(chan struct{})}
		s.m[name] = x
	}
	return x
}

func (x *sema) wakeLocked() {
	close(x.wake)
	x.wake = make(chan struct{})
}

// setCounts gives each name its count in the graph being swapped in.
func (s *semas) setCounts(counts map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range counts {
		x := s.getLocked(name)
		if x.count != c {
			x.count = c
			x.wakeLocked()
		}
	}
}

// acquire takes every semaphore in list (sorted, so two vertices never wait
// on each other) and returns the function that gives them back.
func (s *semas) acquire(ctx context.Context, list []string) (func(), error) {
	var held []string
	release := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, name := range held {
			x := s.m[name]
			x.held--
			x.wakeLocked()
		}
	}
	names := make([]string, 0, len(list))
	for _, spec := range list {
		name, _, err := ParseSema(spec)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for {
			s.mu.Lock()
			x := s.getLocked(name)
			if x.held < x.count {
				x.held++
				s.mu.Unlock()
				held = append(held, name)
				break
			}
			wake := x.wake
			s.mu.Unlock()
			select {
			case <-wake:
			case <-ctx.Done():
				release()
				return nil, ctx.Err()
			}
		}
	}
	return release, nil
}

// waitsOnLocked tells whether n must wait for its parent p before its check:
// until p is in its desired state, except when p is a group whose latest
// check failed only for members n does not depend on (their work was done,
// and a failing resource holds back only what depends on it).
func (n *node) waitsOnLocked(p *node) bool {
	switch {
	case p.busy:
		return true
	case p.st == stateOK && !p.dirty:
		return false
	case p.dirty && p.held == nil && !p.gaveUp && !p.retrying:
		return true // checked again at once
	case p.st == stateOK && p.held == nil:
		return true
	case p.st == stateFailed && len(p.failedMembers) == 0 && p.held == nil:
		return true // failed whole
	case p.st != stateOK && p.st != stateFailed:
		return true
	}
	// p is a group whose latest check failed or left out some members
	tails := n.tails[p]
	if len(tails) == 0 {
		return true
	}
	for _, t := range tails {
		if p.failedMembers[t] || p.held[t] {
			return true
		}
	}
	return false
}

// waitingHeadsLocked returns the members of n that wait on its parent p
// (n.waitsOnLocked(p)), by name; none: all of n. When p is a group that
// failed, or left out, some members only, they are the members of n that
// depend on those.
func (n *node) waitingHeadsLocked(p *node) []string {
	heads := n.heads[p]
	if pairs := n.pairs[p]; len(pairs) > 0 && (len(p.failedMembers) > 0 || p.held != nil) {
		heads = nil
		for _, pr := range pairs {
			if (p.failedMembers[pr[0]] || p.held[pr[0]]) && !slices.Contains(heads, pr[1]) {
				heads = append(heads, pr[1])
			}
		}
	}
	return heads
}

// heldLocked returns, when n waits on some parent, the members of n that
// depend on the parents it waits on, if n can be checked without them: n
// is a MemberHolder, each such parent has failed and settled (no check of it
// is under way or due at once), and some member is left. wait: n must wait.
func (n *node) heldLocked() (held map[string]bool, wait bool) {
	_, holder := n.v.Res.(MemberHolder)
	for _, p := range n.parents {
		if !n.waitsOnLocked(p) {
			continue
		}
		heads := n.waitingHeadsLocked(p)
		// settled: no check of p is under way or due at once; a group
		// that left out members of its own waits for their parents
		settled := !p.busy && (p.st == stateFailed && (p.gaveUp || p.retrying || !p.dirty) || p.st == stateOK && p.held != nil)
		if !holder || !settled || len(heads) == 0 {
			return nil, true
		}
		if held == nil {
			held = map[string]bool{}
		}
		for _, h := range heads {
			held[h] = true
		}
	}
	if held != nil && len(held) > len(n.v.Grouped) {
		return nil, true // every member is held back
	}
	return held, false
}
