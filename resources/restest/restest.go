// Package restest is the conformance suite every resource kind runs against the real machine: validation, noop, apply, idempotence, drift seen by Watch and repaired, and a clean shutdown.
package restest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
)

// DefaultTimeout bounds each wait of the suite when Case.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// quiet is how long Watch must stay silent before a drift, so that the
// events of the resource's own repair are not taken for the drift's.
const quiet = 100 * time.Millisecond

// Case describes one resource for Run.
type Case struct {
	// Kind names the resource kind, for Env and messages.
	Kind string
	// Res returns the resource under test as the decoder would: parameters
	// set, not validated, not yet applied to the machine.
	Res func(t *testing.T) engine.Res
	// State describes what the resource manages as it is on the machine now,
	// leaving out what changes by itself (time stamps). The suite compares
	// it before and after each step.
	State func(t *testing.T) string
	// Drifts change the machine behind the resource's back, one after the
	// other while it is watched; each must be seen by Watch and repaired.
	Drifts []Drift
	// Timeout bounds each wait; 0: DefaultTimeout.
	Timeout time.Duration
	// KV, if set, is the cluster's store handed to Init (engine.Env.KV),
	// for kinds that keep their state there.
	KV engine.KV
}

// Drift is one outside change to what a resource manages.
type Drift struct {
	Name string
	Do   func(t *testing.T)
}

// Run checks the contract of engine.Res on c:
//
//   - Validate accepts the resource; Init (if any) succeeds;
//   - CheckApply(apply=false) reports a change and changes nothing;
//   - CheckApply(apply=true) reports a change and changes the state, the
//     same properties as the noop check before it;
//   - a second CheckApply, with apply false or true, has nothing to do;
//   - Watch calls Running, and after each drift Dirty within the timeout;
//     the drift is then reported by CheckApply(false), left alone by it,
//     repaired by CheckApply(true) back to the applied state, and a further
//     CheckApply has nothing to do;
//   - every CheckApply that reports a change has reported (engine.Changed)
//     at least one engine.Change naming its property, and one that
//     reports none has reported no change;
//   - Watch returns once its context ends, and Close succeeds.
func Run(t *testing.T, c Case) {
	t.Helper()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx := t.Context()
	res := c.Res(t)
	if err := res.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if in, ok := res.(engine.Initer); ok {
		env := Env(t, c.Kind)
		env.KV = c.KV
		if err := in.Init(env); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}

	var noopProps []string // what the last noop check reported
	check := func(step string, apply, wantChanged bool) {
		t.Helper()
		rec := &Recorder{}
		changed, err := res.CheckApply(engine.WithRecorder(t.Context(), rec), apply)
		if err != nil {
			t.Fatalf("%s: CheckApply(apply=%v): %v", step, apply, err)
		}
		if err := CheckReported(changed, rec.Changes()); err != nil {
			t.Errorf("%s: CheckApply(apply=%v): %v", step, apply, err)
		}
		if changed != wantChanged {
			t.Fatalf("%s: CheckApply(apply=%v) changed = %v, want %v", step, apply, changed, wantChanged)
		}
		props := properties(rec.Changes())
		if !apply {
			noopProps = props
			return
		}
		// A dry run shows what the apply that follows it does.
		if noopProps != nil && !slices.Equal(props, noopProps) {
			t.Errorf("%s: CheckApply(apply=true) reported %q, the noop check before it %q: a dry run must show every change", step, props, noopProps)
		}
		noopProps = nil
	}
	same := func(step, want string) {
		t.Helper()
		if got := c.State(t); got != want {
			t.Fatalf("%s: state is\n%s\nwant\n%s", step, got, want)
		}
	}

	before := c.State(t)
	check("noop before the first apply", false, true)
	same("noop before the first apply changed the machine", before)
	check("first apply", true, true)
	applied := c.State(t)
	if applied == before {
		t.Fatalf("first apply: reported a change, but the state is still\n%s", applied)
	}
	check("noop after apply", false, false)
	check("second apply (idempotence)", true, false)
	same("second apply", applied)

	wctx, cancel := context.WithCancel(ctx)
	ev := NewEvents()
	watchErr := make(chan error, 1)
	go func() { watchErr <- res.Watch(wctx, ev) }()
	stop := func() {
		cancel()
		select {
		case err := <-watchErr:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v after its context ended", err)
			}
		case <-time.After(timeout):
			t.Fatalf("Watch did not return within %v after its context ended", timeout)
		}
	}
	if !ev.WaitRunning(timeout, watchErr) {
		stop()
		t.Fatalf("Watch did not call Running within %v", timeout)
	}

	for _, d := range c.Drifts {
		ev.Settle(quiet, timeout)
		d.Do(t)
		if !ev.WaitDirty(timeout) {
			stop()
			t.Fatalf("drift %q: Watch did not call Dirty within %v", d.Name, timeout)
		}
		drifted := c.State(t)
		if drifted == applied {
			t.Fatalf("drift %q changed nothing the State function sees", d.Name)
		}
		check("drift "+d.Name+": noop", false, true)
		same("drift "+d.Name+": noop changed the machine", drifted)
		check("drift "+d.Name+": repair", true, true)
		same("drift "+d.Name+": after repair", applied)
		check("drift "+d.Name+": after repair", true, false)
	}

	stop()
	if err := res.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// Env is the environment the suite hands a resource: its logs go to the
// test's output.
func Env(tb testing.TB, kind string) engine.Env {
	name := tb.Name()
	return engine.Env{
		Kind:     kind,
		Name:     name,
		Hostname: "restest",
		Prefix:   tb.TempDir(),
		Logger:   Logger(tb).With("res", kind+"["+name+"]"),
	}
}

// Logger returns a logger that writes to the test's output.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Events records what a Watch reports. Dirty, like the engine's, collapses
// bursts into one pending signal.
type Events struct {
	running chan struct{} // closed by the first Running
	once    sync.Once
	dirty   chan struct{} // one slot
}

// NewEvents returns an Events with nothing reported yet.
func NewEvents() *Events {
	return &Events{running: make(chan struct{}), dirty: make(chan struct{}, 1)}
}

// Running implements engine.Events.
func (e *Events) Running() { e.once.Do(func() { close(e.running) }) }

// Dirty implements engine.Events.
func (e *Events) Dirty() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

// WaitRunning reports whether Running was called within d. It gives up early
// if Watch returns (a value on watchErr, which is put back).
func (e *Events) WaitRunning(d time.Duration, watchErr chan error) bool {
	select {
	case <-e.running:
		return true
	case err := <-watchErr:
		watchErr <- err
		return false
	case <-time.After(d):
		return false
	}
}

// WaitDirty reports whether Dirty was called (since the last Drain) within d.
func (e *Events) WaitDirty(d time.Duration) bool {
	select {
	case <-e.dirty:
		return true
	case <-time.After(d):
		return false
	}
}

// Drain forgets a pending Dirty.
func (e *Events) Drain() {
	select {
	case <-e.dirty:
	default:
	}
}

// Settle waits until Dirty has not been called for the quiet period (at
// most max), and forgets what was reported before.
func (e *Events) Settle(quiet, max time.Duration) {
	end := time.After(max)
	for {
		select {
		case <-e.dirty:
		case <-time.After(quiet):
			return
		case <-end:
			return
		}
	}
}

// Dirtied returns the channel that receives a value when Dirty was called.
func (e *Events) Dirtied() <-chan struct{} { return e.dirty }

// Loop runs res the way the engine runs a vertex until tb ends: Watch in
// one goroutine, and in another a CheckApply(apply=true) at the start and
// after each burst of Dirty. Each result goes to report (which may be nil;
// it is called from the loop's goroutine and should not block long). Loop
// returns once Watch has called Running; res must be validated and
// initialised. At the end of the test the loop stops, Watch returns and
// Close is called.
func Loop(tb testing.TB, res engine.Res, report func(changed bool, err error)) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ev := NewEvents()
	watchErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchErr <- res.Watch(ctx, ev)
	}()
	if !ev.WaitRunning(DefaultTimeout, watchErr) {
		cancel()
		wg.Wait()
		tb.Fatalf("Watch did not call Running within %v", DefaultTimeout)
	}
	ev.Dirty() // the first check
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ev.dirty:
			}
			rec := &Recorder{}
			changed, err := res.CheckApply(engine.WithRecorder(ctx, rec), true)
			if err == nil {
				if rerr := CheckReported(changed, rec.Changes()); rerr != nil {
					tb.Errorf("CheckApply: %v", rerr)
				}
			}
			if ctx.Err() != nil {
				return
			}
			if report != nil {
				report(changed, err)
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-watchErr; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("Watch: %v", err)
		}
		if err := res.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
}

// Recorder collects the changes CheckApply reports.
type Recorder struct {
	mu sync.Mutex // guards cs
	cs []engine.Change
}

// Record implements engine.Recorder.
func (r *Recorder) Record(c engine.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cs = append(r.cs, c)
}

// Changes returns what was recorded.
func (r *Recorder) Changes() []engine.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]engine.Change(nil), r.cs...)
}

// CheckApply calls res.CheckApply with a recorder and checks how it
// reported: a change comes with at least one engine.Change, each naming
// its property; no change, with none. A kind that breaks this fails tb.
func CheckApply(tb testing.TB, res engine.Res, apply bool) (bool, error) {
	tb.Helper()
	rec := &Recorder{}
	changed, err := res.CheckApply(engine.WithRecorder(tb.Context(), rec), apply)
	if err != nil {
		return changed, err
	}
	if err := CheckReported(changed, rec.Changes()); err != nil {
		tb.Errorf("CheckApply(apply=%v): %v", apply, err)
	}
	return changed, nil
}

// CheckReported is the rule CheckApply enforces, for a kind's own tests.
func CheckReported(changed bool, cs []engine.Change) error {
	switch {
	case changed && len(cs) == 0:
		return errors.New("reported a change but no engine.Change: call engine.Changed(ctx, ...) once per property that differs")
	case !changed && len(cs) > 0:
		return fmt.Errorf("reported no change but engine.Changed %d times (%+v)", len(cs), cs)
	}
	for _, c := range cs {
		if c.Property == "" {
			return fmt.Errorf("an engine.Change with no Property: %+v", c)
		}
	}
	return nil
}

// properties are the sorted property names of cs.
func properties(cs []engine.Change) []string {
	ps := make([]string, 0, len(cs))
	for _, c := range cs {
		ps = append(ps, c.Property)
	}
	slices.Sort(ps)
	return ps
}

// ReportLatency reports the median and the 99th percentile (the maximum
// with fewer than 100 samples) of repair latencies, in milliseconds, as
// the metrics p50-ms and p99-ms.
func ReportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}
