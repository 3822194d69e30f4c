package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Rollout states.
const (
	RolloutRunning   = "running"
	RolloutCompleted = "completed"
	RolloutHalted    = "halted"
	RolloutAborted   = "aborted"
)

// Results of a host in a rollout. A host not yet reached has none.
const (
	HostPending = "pending" // given the deploy, not judged yet
	HostDone    = "done"    // converged on it
	HostFailed  = "failed"  // a resource failed, or no convergence within the batch timeout
)

var (
	// ErrRolloutRunning refuses a deploy or a rollout while another
	// rollout runs: --abort it, or wait for it to end.
	ErrRolloutRunning = errors.New("a rollout is running")
	// ErrNoRollout: there is no rollout record, or none running to abort.
	ErrNoRollout = errors.New("no rollout")
)

// AmountError is a rollout flag's value out of range or not a count or
// a percentage.
type AmountError struct {
	Flag, Value, Why string
}

func (e *AmountError) Error() string { return fmt.Sprintf("%s %q: %s", e.Flag, e.Value, e.Why) }

// maxOps bounds the operations of one transaction: etcd's default
// --max-txn-ops is 128.
const maxOps = 100

// Rollout is the state of a staged rollout, NS deploy/rollout, as JSON.
// Every change is one transaction guarded by the record's ModRevision, so
// that two drivers (two `mgmt deploy --resume`) cannot fight: the one whose
// transaction fails reads the record again and goes on from there.
type Rollout struct {
	Deploy      int64             `json:"deploy"`
	From        int64             `json:"from"` // current when it started: where a rollback sends hosts
	Hosts       []string          `json:"hosts"`
	Batches     [][]string        `json:"batches"` // batch 0: the canaries (maybe none)
	Batch       int               `json:"batch"`   // the batch in progress
	MaxFailures int               `json:"max_failures"`
	Timeout     float64           `json:"timeout"` // seconds a batch's hosts have to converge
	Rollback    bool              `json:"rollback"`
	State       string            `json:"state"`
	Results     map[string]string `json:"results"`  // host -> pending, done, failed
	Depooled    []string          `json:"depooled"` // hosts whose depool key this rollout set
	Started     time.Time         `json:"started"`
	// Beyond the agreed schema: when the batch in progress started (a
	// resumed driver keeps its deadline), why each failed host failed, why
	// the rollout halted, and when it ended.
	BatchStarted time.Time         `json:"batch_started,omitzero"`
	Why          map[string]string `json:"why,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Ended        time.Time         `json:"ended,omitzero"`
}

// Failures counts the hosts that failed so far.
func (r *Rollout) Failures() int {
	n := 0
	for _, v := range r.Results {
		if v == HostFailed {
			n++
		}
	}
	return n
}

// clone is a deep copy of r.
func (r Rollout) clone() Rollout {
	r.Hosts = slices.Clone(r.Hosts)
	r.Batches = slices.Clone(r.Batches)
	for i := range r.Batches {
		r.Batches[i] = slices.Clone(r.Batches[i])
	}
	r.Results = maps.Clone(r.Results)
	r.Depooled = slices.Clone(r.Depooled)
	r.Why = maps.Clone(r.Why)
	return r
}

func (r *Rollout) timeout() time.Duration {
	return time.Duration(r.Timeout * float64(time.Second))
}

// Amount is a count of hosts or a percentage of a rollout's hosts.
type Amount struct {
	N       int
	Percent bool
}

// ParseAmount reads "N" or "P%" (P from 0 to 100); flag names the flag
// in errors.
func ParseAmount(flag, s string) (Amount, error) {
	v, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return Amount{}, &AmountError{flag, s, "want a number of hosts (3) or a percentage of them (25%)"}
	case n < 0:
		return Amount{}, &AmountError{flag, s, "cannot be negative"}
	case pct && n > 100:
		return Amount{}, &AmountError{flag, s, "a percentage of the hosts is at most 100%"}
	}
	return Amount{N: n, Percent: pct}, nil
}

func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// of resolves a against hosts hosts: a percentage rounded up when roundUp
// (a batch size), down otherwise (a budget); a count as it is.
func (a Amount) of(hosts int, roundUp bool) int {
	if !a.Percent {
		return a.N
	}
	x := float64(a.N) * float64(hosts) / 100
	if roundUp {
		return int(math.Ceil(x))
	}
	return int(math.Floor(x))
}

// RolloutSpec describes a staged rollout.
type RolloutSpec struct {
	Canary      int    // hosts that get the deploy first; any failure among them halts
	Batch       Amount // hosts per batch after the canaries
	MaxFailures Amount // failures the rollout survives (depooling the failed hosts)
	Timeout     time.Duration
	NoRollback  bool // on a halt, leave the hosts that got the deploy on it
}

// Check refuses a spec that cannot be run.
func (sp RolloutSpec) Check() error {
	switch {
	case sp.Canary < 0:
		return &AmountError{"--canary", strconv.Itoa(sp.Canary), "cannot be negative"}
	case sp.Batch.N <= 0:
		return &AmountError{"--batch", sp.Batch.String(), "a batch needs at least one host"}
	case sp.Timeout <= 0:
		return &AmountError{"--batch-timeout", sp.Timeout.String(), "want a positive duration"}
	}
	return nil
}

// Plan orders hosts for deploy n: the canaries are the first sp.Canary of
// a stable shuffle (by the hash of host and number: the same hosts for the
// same deploy, different ones for the next), then the rest by name in
// batches.
func Plan(n int64, hosts []string, sp RolloutSpec) [][]string {
	sorted := slices.Clone(hosts)
	sort.Strings(sorted)
	shuffled := slices.Clone(sorted)
	key := func(h string) string {
		sum := sha256.Sum256([]byte(h + "/" + strconv.FormatInt(n, 10)))
		return string(sum[:])
	}
	sort.SliceStable(shuffled, func(i, j int) bool { return key(shuffled[i]) < key(shuffled[j]) })
	canaries := shuffled[:min(sp.Canary, len(shuffled))]
	sort.Strings(canaries)
	batches := [][]string{canaries}
	var rest []string
	for _, h := range sorted {
		if !slices.Contains(canaries, h) {
			rest = append(rest, h)
		}
	}
	size := max(1, sp.Batch.of(len(sorted), true))
	for len(rest) > 0 {
		b := rest[:min(size, len(rest))]
		batches = append(batches, b)
		rest = rest[len(b):]
	}
	return batches
}

func (s *Store) rolloutKey() string { return s.ns + "rollout" }

// ReadRollout returns the rollout record (the last rollout, whatever its
// state) and its ModRevision; ErrNoRollout when there never was one.
func (s *Store) ReadRollout(ctx context.Context) (Rollout, int64, error) {
	resp, err := s.cli.Get(ctx, s.rolloutKey())
	if err != nil {
		return Rollout{}, 0, fmt.Errorf("read rollout: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Rollout{}, 0, ErrNoRollout
	}
	var r Rollout
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
		return Rollout{}, 0, fmt.Errorf("%w: rollout record: %w", ErrCorrupt, err)
	}
	if r.Results == nil {
		r.Results = map[string]string{}
	}
	if r.Batch < 0 || r.Batch >= len(r.Batches) {
		return Rollout{}, 0, fmt.Errorf("%w: rollout record: batch %d of %d", ErrCorrupt, r.Batch, len(r.Batches))
	}
	return r, resp.Kvs[0].ModRevision, nil
}

// rolloutGuard returns the record's ModRevision (0: none), refusing a
// running rollout.
func rolloutGuard(kvs []*mvccpb.KeyValue) (int64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	var r struct {
		Deploy int64  `json:"deploy"`
		State  string `json:"state"`
	}
	if json.Unmarshal(kvs[0].Value, &r) == nil && r.State == RolloutRunning {
		return 0, fmt.Errorf("%w: deploy %d: `mgmt deploy --status` shows it; --resume or --abort it", ErrRolloutRunning, r.Deploy)
	}
	return kvs[0].ModRevision, nil
}

// commit runs ops and the new record in one transaction if the record is
// still at rev; false: it moved, read it again.
func (s *Store) commit(ctx context.Context, rev int64, r *Rollout, ops ...clientv3.Op) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("rollout: %w", err)
	}
	ops = append(ops, clientv3.OpPut(s.rolloutKey(), string(b)))
	tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.rolloutKey()), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("rollout of %d: %w", r.Deploy, err)
	}
	return tr.Succeeded, nil
}

// StartRollout stores bundle as a staged deploy and starts its rollout
// over the hosts alive now (with a status record, running a deploy, not
// a file): the hosts that come later, or come back, read their target or
// current when they do. The rollout then needs Drive to move on.
func (s *Store) StartRollout(ctx context.Context, bundle []byte, opt PutOptions, sp RolloutSpec) (Meta, Rollout, error) {
	if err := sp.Check(); err != nil {
		return Meta{}, Rollout{}, err
	}
	resp, err := s.cli.Get(ctx, s.rolloutKey())
	if err != nil {
		return Meta{}, Rollout{}, fmt.Errorf("read rollout: %w", err)
	}
	rev, err := rolloutGuard(resp.Kvs)
	if err != nil {
		return Meta{}, Rollout{}, err
	}
	from, err := s.Current(ctx)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Meta{}, Rollout{}, fmt.Errorf("a rollout needs a current deploy to fall back to: make the first deploy without --canary or --batch: %w", err)
		}
		return Meta{}, Rollout{}, err
	}
	statuses, _, err := s.ReadStatuses(ctx)
	if err != nil {
		return Meta{}, Rollout{}, err
	}
	var hosts []string
	for h, st := range statuses {
		if st.Deploy > 0 || st.Wanted > 0 {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return Meta{}, Rollout{}, fmt.Errorf("rollout: no host is running a deploy (none has a status record in etcd): nothing to roll out to")
	}
	sort.Strings(hosts)
	opt.Staged = true
	m, err := s.Put(ctx, bundle, opt)
	if err != nil {
		return Meta{}, Rollout{}, err
	}
	r := Rollout{
		Deploy: m.Number, From: from.Number, Hosts: hosts, Batches: Plan(m.Number, hosts, sp),
		MaxFailures: sp.MaxFailures.of(len(hosts), false), Timeout: sp.Timeout.Seconds(),
		Rollback: !sp.NoRollback, State: RolloutRunning, Results: map[string]string{},
		Depooled: []string{}, Started: time.Now().UTC(),
	}
	ok, err := s.commit(ctx, rev, &r)
	if err != nil {
		return m, Rollout{}, err
	}
	if !ok {
		return m, Rollout{}, fmt.Errorf("%w: another one started while deploy %d was stored (it stays staged, unused)", ErrRolloutRunning, m.Number)
	}
	return m, r, nil
}

// Drive moves the rollout on until it ends (completed, halted, aborted:
// the record is returned, with no error) or ctx ends (the record stays as
// it is in etcd, for --status, --resume or --abort). onChange, if not nil,
// sees every version of the record Drive reads. Two Drives at once share
// the work: each step is guarded by the record's ModRevision.
func (s *Store) Drive(ctx context.Context, onChange func(Rollout)) (Rollout, error) {
	var w wakers // none until the first wait
	defer w.stop()
	var seen int64
	for {
		r, rev, err := s.ReadRollout(ctx)
		if err != nil {
			return Rollout{}, err
		}
		if rev != seen && onChange != nil {
			onChange(r.clone()) // step changes r's maps and slices
		}
		seen = rev
		if r.State != RolloutRunning {
			return r, nil
		}
		wait, srev, err := s.step(ctx, &r, rev)
		if err != nil {
			return r, err
		}
		if wait < 0 {
			continue // the record moved: by this step or by another driver
		}
		// Nothing to do until a host's status changes, the record does
		// (an --abort), or the batch's deadline passes.
		if w.status == nil {
			var wctx context.Context
			wctx, w.cancel = context.WithCancel(clientv3.WithRequireLeader(ctx))
			w.status = s.cli.Watch(wctx, s.statusPrefix(), clientv3.WithPrefix(), clientv3.WithRev(srev+1))
			w.record = s.cli.Watch(wctx, s.rolloutKey(), clientv3.WithRev(rev+1))
		}
		var resp clientv3.WatchResponse
		ok := true
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return r, fmt.Errorf("rollout of %d left %s at batch %d: %w", r.Deploy, r.State, r.Batch, ctx.Err())
		case resp, ok = <-w.status:
		case resp, ok = <-w.record:
		case <-t.C:
		}
		t.Stop()
		if !ok || resp.Err() != nil { // watch again, from the next read
			w.stop()
		}
	}
}

// wakers are the watches a waiting driver wakes on: the hosts' statuses
// and the rollout record.
type wakers struct {
	status, record clientv3.WatchChan
	cancel         context.CancelFunc
}

func (w *wakers) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	*w = wakers{}
}

// step does the next thing the rollout r (at rev) needs, in one guarded
// transaction, and returns -1; or, with nothing to do before a status
// changes, how long until the batch's deadline, and the revision the
// statuses were read at.
func (s *Store) step(ctx context.Context, r *Rollout, rev int64) (time.Duration, int64, error) {
	batch := r.Batches[r.Batch]
	// 1. Give the batch's hosts the deploy: their targets and "pending".
	var ops []clientv3.Op
	for _, h := range batch {
		if _, ok := r.Results[h]; !ok && len(ops) < maxOps {
			ops = append(ops, clientv3.OpPut(s.targetKey(h), strconv.FormatInt(r.Deploy, 10)))
			r.Results[h] = HostPending
		}
	}
	if len(ops) > 0 {
		if r.BatchStarted.IsZero() {
			r.BatchStarted = time.Now().UTC()
		}
		_, err := s.commit(ctx, rev, r, ops...)
		return -1, 0, err
	}
	// 2. Judge the pending hosts by their status.
	statuses, srev, err := s.ReadStatuses(ctx)
	if err != nil {
		return 0, 0, err
	}
	deadline := r.BatchStarted.Add(r.timeout())
	now := time.Now()
	judged := 0
	canary := r.Batch == 0
	var failedNow []string
	for _, h := range batch {
		if r.Results[h] != HostPending || judged == maxOps {
			continue
		}
		res, why := judge(r.Deploy, statuses[h], now.After(deadline), r.timeout())
		if res == HostPending {
			continue
		}
		judged++
		r.Results[h] = res
		if res == HostFailed {
			if r.Why == nil {
				r.Why = map[string]string{}
			}
			r.Why[h] = why
			failedNow = append(failedNow, h)
		}
	}
	if f := r.Failures(); (canary && f > 0) || f > r.MaxFailures {
		reason := fmt.Sprintf("%d failed, the budget is %d", f, r.MaxFailures)
		if canary {
			reason = fmt.Sprintf("%d of %d canaries failed", f, len(batch))
		}
		return -1, 0, s.halt(ctx, r, rev, RolloutHalted, reason, r.Rollback)
	}
	ops = nil
	for _, h := range failedNow {
		ops = append(ops, clientv3.OpPut(s.depoolKey(h), strconv.FormatInt(r.Deploy, 10)))
		r.Depooled = append(r.Depooled, h)
	}
	if judged > 0 {
		_, err := s.commit(ctx, rev, r, ops...)
		return -1, 0, err
	}
	for _, h := range batch {
		if r.Results[h] == HostPending {
			return max(time.Until(deadline), 0) + time.Millisecond, srev, nil
		}
	}
	// 3. The batch is over: the next one, or the end.
	if r.Batch+1 < len(r.Batches) {
		r.Batch++
		r.BatchStarted = time.Time{}
		_, err := s.commit(ctx, rev, r)
		return -1, 0, err
	}
	r.State, r.Ended = RolloutCompleted, time.Now().UTC()
	_, err = s.commit(ctx, rev, r,
		clientv3.OpPut(s.currentKey(), strconv.FormatInt(r.Deploy, 10)),
		clientv3.OpDelete(s.ns+"target/", clientv3.WithPrefix()))
	return -1, 0, err
}

// judge says what a host's status (zero: none, the host is not alive)
// means for deploy n.
func judge(n int64, st HostStatus, late bool, timeout time.Duration) (string, string) {
	switch {
	case st.Deploy == n && st.State == StateConverged:
		return HostDone, ""
	case st.Deploy == n && st.State == StateFailed:
		var res []string
		for _, f := range st.Failed {
			res = append(res, f.Res+": "+f.Err)
		}
		if len(res) == 0 {
			return HostFailed, "resources failed"
		}
		return HostFailed, strings.Join(res, "; ")
	case st.Wanted == n && st.State == StateInvalid:
		return HostFailed, "invalid here: " + st.Error
	case late && st.Host == "":
		return HostFailed, fmt.Sprintf("no status (offline?) within the batch timeout (%v)", timeout)
	case late:
		return HostFailed, fmt.Sprintf("not converged on %d within the batch timeout (%v): %s on %d", n, timeout, st.State, st.Deploy)
	}
	return HostPending, ""
}

// halt ends a running rollout (at rev) as state. With rollback, in one
// transaction with the record: every target goes (the hosts given the
// deploy go back to current, the old deploy) and so do the depool keys
// this rollout set (those hosts go back to the old deploy too).
func (s *Store) halt(ctx context.Context, r *Rollout, rev int64, state, reason string, rollback bool) error {
	var ops []clientv3.Op
	if rollback {
		if len(r.Depooled) > maxOps {
			// More depooled hosts than one transaction takes: re-pool
			// some first (the record says which are still depooled); the
			// caller reads the record again and halts again.
			for _, h := range r.Depooled[:maxOps] {
				ops = append(ops, clientv3.OpDelete(s.depoolKey(h)))
			}
			r.Depooled = r.Depooled[maxOps:]
			_, err := s.commit(ctx, rev, r, ops...)
			return err
		}
		for _, h := range r.Depooled {
			ops = append(ops, clientv3.OpDelete(s.depoolKey(h)))
		}
		r.Depooled = []string{}
		ops = append(ops, clientv3.OpDelete(s.ns+"target/", clientv3.WithPrefix()))
	}
	r.State, r.Reason, r.Ended = state, reason, time.Now().UTC()
	if rollback {
		r.Reason += fmt.Sprintf(": rolled back to %d", r.From)
	} else {
		r.Reason += fmt.Sprintf(": hosts given %d stay on it (no rollback)", r.Deploy)
	}
	_, err := s.commit(ctx, rev, r, ops...)
	return err
}

// AbortRollout halts the running rollout with rollback, whatever its
// --no-rollback said.
func (s *Store) AbortRollout(ctx context.Context, reason string) (Rollout, error) {
	for {
		r, rev, err := s.ReadRollout(ctx)
		if err != nil {
			return Rollout{}, err
		}
		if r.State != RolloutRunning {
			return r, fmt.Errorf("%w running: the last one (deploy %d) is %s", ErrNoRollout, r.Deploy, r.State)
		}
		if err := s.halt(ctx, &r, rev, RolloutAborted, reason, true); err != nil {
			return r, err
		}
		if r2, _, err := s.ReadRollout(ctx); err == nil && r2.State == RolloutAborted && r2.Deploy == r.Deploy {
			return r2, nil
		}
	}
}
