package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
)

// hostStatus is what this host's status record says, learnt from the
// engine (it is the engine's Observer, passing every call on to the
// next one: the metrics) and from the deploys the agent runs. Once the
// cluster is up, a deploy.StatusPublisher writes it to etcd.
type hostStatus struct {
	next    engine.Observer // may be nil
	version string

	mu      sync.Mutex // guards the fields below
	eng     *engine.Engine
	running deploy.Meta // the deploy the engine runs; Number 0: a graph file
	wanted  int64       // the deploy this host was told to run
	err     string      // why wanted is not running
	drifts  int64
	settled bool // converged since the last swap: a change now is a drift
	// swapPending: between swapping (or renaming) and swapped, what
	// changes is the new graph's or the deploy's doing, not a drift.
	swapPending bool
	pub         *deploy.StatusPublisher // nil until the cluster is up
	depool      *depool                 // nil until the cluster is up
	// moved is ready (one slot) once the engine converged or a deploy
	// was swapped in (one whose graph is the running one's changes
	// nothing): the depool follower may repool the host.
	moved chan struct{}
}

func newHostStatus(next engine.Observer, version string) *hostStatus {
	return &hostStatus{next: next, version: version, moved: make(chan struct{}, 1)}
}

// Checked counts a change made after the graph had converged (since the
// last swap) as a drift repaired.
func (h *hostStatus) Checked(kind string, changed bool, err error, took time.Duration) {
	if h.next != nil {
		h.next.Checked(kind, changed, err, took)
	}
	h.mu.Lock()
	if changed && err == nil && h.settled {
		h.drifts++
	}
	h.mu.Unlock()
	h.notify()
}

func (h *hostStatus) Converged(converged bool) {
	if h.next != nil {
		h.next.Converged(converged)
	}
	if converged {
		h.settle()
	}
	h.notify()
}

// settle starts counting drifts once no swap is under way and the engine,
// asked afresh, is converged: the engine tells of a change of its state
// after the fact, from its own goroutine, so a "converged" may be from
// before a swap that came in between.
func (h *hostStatus) settle() {
	h.mu.Lock()
	eng, pending := h.eng, h.swapPending
	h.mu.Unlock()
	if pending || eng != nil && !eng.State().Converged {
		return // the next "converged", or swapped, settles
	}
	h.mu.Lock()
	h.settled = true
	h.mu.Unlock()
	h.poke()
}

func (h *hostStatus) poke() {
	select {
	case h.moved <- struct{}{}:
	default:
	}
}

func (h *hostStatus) notify() {
	h.mu.Lock()
	pub := h.pub
	h.mu.Unlock()
	if pub != nil {
		pub.Notify()
	}
}

func (h *hostStatus) setEngine(e *engine.Engine) {
	h.mu.Lock()
	h.eng = e
	h.mu.Unlock()
	h.notify()
}

// swapping is called before a new graph is swapped in: what it changes
// while converging is no drift. m is the deploy it comes from, nil for a
// graph from the same source as the running one.
func (h *hostStatus) swapping(m *deploy.Meta) {
	if h == nil { // a runner a test made by hand
		return
	}
	h.mu.Lock()
	h.settled, h.swapPending = false, true
	if m != nil {
		h.running, h.err = *m, ""
	}
	h.mu.Unlock()
	h.poke()
	h.notify()
}

// renaming is swapping for the moment a deploy's files are replaced under
// the running graph: what the running graph's file resources change on
// seeing them is the deploy, not a drift, until swapped.
func (h *hostStatus) renaming() { h.swapping(nil) }

// swapped is called once the graph announced by swapping runs (or was
// refused): from the engine's next converged state on, a change is a drift.
func (h *hostStatus) swapped() {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.swapPending = false
	h.mu.Unlock()
	h.settle()
}

// want records the deploy this host was told to run; err, if not empty,
// why it does not run it.
func (h *hostStatus) want(n int64, err string) {
	h.mu.Lock()
	h.wanted, h.err = n, err
	h.mu.Unlock()
	h.notify()
}

func (h *hostStatus) runningDeploy() deploy.Meta {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running
}

// snapshot is the status record now.
func (h *hostStatus) snapshot() deploy.HostStatus {
	h.mu.Lock()
	eng, dp := h.eng, h.depool
	s := deploy.HostStatus{
		Version: h.version, Deploy: h.running.Number, Wanted: h.wanted,
		Error: h.err, Drifts: h.drifts, State: deploy.StateConverging,
	}
	if h.running.Git != nil {
		s.Commit = h.running.Git.Commit
	}
	h.mu.Unlock()
	if s.Wanted == 0 {
		s.Wanted = s.Deploy
	}
	if eng != nil {
		es := eng.State()
		for _, f := range es.Failures {
			s.Failed = append(s.Failed, deploy.FailedRes{Res: f.Res, Err: f.Err.Error()})
		}
		s.Held = es.Held
		switch {
		case es.Converged:
			s.State = deploy.StateConverged
		case es.Quiet && len(es.Failures) > 0:
			s.State = deploy.StateFailed
		}
	}
	if s.Error != "" && s.Wanted != s.Deploy {
		s.State = deploy.StateInvalid
	}
	if dp.number() != 0 { // whatever the engine does
		s.State = deploy.StateDepooled
	}
	return s
}

// publish starts publishing the status through c until ctx ends, in a
// goroutine of wg (it revokes the lease as it returns).
func (h *hostStatus) publish(ctx context.Context, wg *sync.WaitGroup, c *etcd.Client, host string, dp *depool, log *slog.Logger) {
	pub := deploy.NewStatusPublisher(c, host, h.snapshot, log)
	h.mu.Lock()
	h.pub, h.depool = pub, dp
	h.mu.Unlock()
	wg.Go(func() { pub.Run(ctx) })
	wg.Go(func() { h.followDepool(ctx, deploy.NewStore(c), host, dp, log) })
	pub.Notify()
}

// followDepool tells the publisher of each change of the depool key, and
// repools the host (deletes the key) once it has converged on a deploy
// newer than the one it was depooled on: a later good deploy brings it
// back.
func (h *hostStatus) followDepool(ctx context.Context, st *deploy.Store, host string, dp *depool, log *slog.Logger) {
	var again <-chan time.Time // on a newer deploy, not converged yet: look again soon
	for {
		select {
		case <-ctx.Done():
			return
		case <-dp.changed:
			h.notify()
		case <-h.moved:
		case <-again:
		}
		again = nil
		on := dp.number()
		if on == 0 {
			continue
		}
		s := h.snapshot()
		if s.Deploy <= on {
			continue
		}
		h.mu.Lock()
		eng := h.eng
		h.mu.Unlock()
		// The engine may be busy a moment with a graph that changes
		// nothing, too briefly for the tracker to say so: do not wait
		// for a convergence that will not be told.
		if eng == nil || !eng.State().Converged {
			again = time.After(200 * time.Millisecond)
			continue
		}
		if _, err := st.Repool(ctx, host, s.Deploy); err != nil && ctx.Err() == nil {
			log.Warn("not repooled; trying at the next convergence", "err", err)
		}
	}
}
