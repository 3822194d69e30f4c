package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fleet is a set of fake agents on one real etcd: each follows its
// target (else current) with Watch and writes, under its own lease, a
// status record saying it converged on the number, failed on it, or is
// still converging, as its outcome function says. Stopping one revokes
// its lease, as an agent that dies loses its status key.
type fleet struct {
	t  *testing.T
	st *Store
	c  *etcd.Client

	mu    sync.Mutex // guards hosts
	hosts map[string]*fakeHost
}

type fakeHost struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// outcome says what a fake host does with deploy n: StateConverged,
// StateFailed, or StateConverging (never converges).
type outcome func(n int64) string

func good(int64) string { return StateConverged }

// failsOn fails deploy bad, converges on any other.
func failsOn(bad int64) outcome {
	return func(n int64) string {
		if n == bad {
			return StateFailed
		}
		return StateConverged
	}
}

func newFleet(t *testing.T) *fleet {
	st, c := testStore(t)
	f := &fleet{t: t, st: st, c: c, hosts: map[string]*fakeHost{}}
	t.Cleanup(func() {
		f.mu.Lock()
		names := make([]string, 0, len(f.hosts))
		for h := range f.hosts {
			names = append(names, h)
		}
		f.mu.Unlock()
		for _, h := range names {
			f.stop(h)
		}
	})
	return f
}

func (f *fleet) start(name string, do outcome) {
	ctx, cancel := context.WithCancel(context.Background())
	h := &fakeHost{cancel: cancel, done: make(chan struct{})}
	f.mu.Lock()
	f.hosts[name] = h
	f.mu.Unlock()
	go func() {
		defer close(h.done)
		cli := f.c.Raw()
		lease, err := cli.Grant(ctx, 10)
		if err != nil {
			f.t.Errorf("%s: lease: %v", name, err)
			return
		}
		defer cli.Revoke(context.Background(), lease.ID)
		key := f.c.Namespace() + "status/" + name
		for n := range f.st.Watch(ctx, name) {
			st := HostStatus{Host: name, Version: "test", Deploy: n, Wanted: n, State: do(n), UpdatedAt: time.Now().UTC()}
			if st.State == StateFailed {
				st.Failed = []FailedRes{{Res: "exec[check]", Err: "exit status 1"}}
			}
			b, _ := json.Marshal(st)
			if _, err := cli.Put(ctx, key, string(b), clientv3.WithLease(lease.ID)); err != nil {
				continue // ctx ended
			}
			if st.State == StateConverged {
				f.st.Repool(ctx, name, n)
			}
		}
	}()
}

// stop takes a host offline: its status key goes with its lease.
func (f *fleet) stop(name string) {
	f.mu.Lock()
	h := f.hosts[name]
	delete(f.hosts, name)
	f.mu.Unlock()
	if h != nil {
		h.cancel()
		<-h.done
	}
}

// status returns host's status record, zero when it has none.
func (f *fleet) status(name string) HostStatus {
	all, _, err := f.st.ReadStatuses(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return all[name]
}

// until waits for ok, failing the test after d.
func until(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deployed starts hosts with their outcomes on a first, plain deploy and
// waits until every one says it converged on it.
func (f *fleet) deployed(hosts map[string]outcome) Meta {
	f.t.Helper()
	m, err := f.st.Put(context.Background(), testBundle(f.t, "one"), PutOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for h, do := range hosts {
		f.start(h, do)
	}
	for h := range hosts {
		until(f.t, 10*time.Second, h+" converged on the first deploy", func() bool {
			st := f.status(h)
			return st.Deploy == m.Number && st.State == StateConverged
		})
	}
	return m
}

// testBundle is a small valid bundle, different for every text.
func testBundle(t *testing.T, text string) []byte {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"graph.yaml": "# " + text + "\nresources: {noop: [{name: a}]}\n"})
	b, err := Bundle(BundleSpec{Graph: dir + "/graph.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fleet) keys(prefix string) map[string]string {
	f.t.Helper()
	resp, err := f.c.Raw().Get(context.Background(), f.c.Namespace()+prefix, clientv3.WithPrefix())
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), f.c.Namespace()+prefix)] = string(kv.Value)
	}
	return out
}

func (f *fleet) current() int64 {
	f.t.Helper()
	m, err := f.st.Current(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return m.Number
}

func spec(canary int, batch, budget string, timeout time.Duration) RolloutSpec {
	b, err := ParseAmount("--batch", batch)
	if err != nil {
		panic(err)
	}
	mf, err := ParseAmount("--max-failures", budget)
	if err != nil {
		panic(err)
	}
	return RolloutSpec{Canary: canary, Batch: b, MaxFailures: mf, Timeout: timeout}
}

var five = []string{"web1", "web2", "web3", "web4", "web5"}

// A canary that fails halts the rollout at once, with rollback: its
// target goes (it is back on the old deploy), the other hosts were never
// given the new one, and current has not moved, whatever the budget.
func TestRolloutCanaryFailsHalts(t *testing.T) {
	f := newFleet(t)
	sp := spec(1, "2", "2", 30*time.Second)
	// The canary of deploy 2 is known before: the plan is deterministic.
	canary := Plan(2, five, sp)[0][0]
	hosts := map[string]outcome{}
	for _, h := range five {
		hosts[h] = good
	}
	hosts[canary] = failsOn(2)
	first := f.deployed(hosts)

	ctx := context.Background()
	m, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{Message: "bad"}, sp)
	if err != nil {
		t.Fatal(err)
	}
	if m.Number != 2 || !m.Staged {
		t.Fatalf("stored %d, staged %v: want 2, staged", m.Number, m.Staged)
	}
	start := time.Now()
	r, err := f.st.Drive(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("halted %v after the start: %s", time.Since(start).Round(time.Millisecond), r.Reason)
	if r.State != RolloutHalted || !strings.Contains(r.Reason, "1 of 1 canaries failed") {
		t.Fatalf("rollout %s (%s): want halted by the canary", r.State, r.Reason)
	}
	if want := map[string]string{canary: HostFailed}; !mapsEqual(r.Results, want) {
		t.Fatalf("results %v: want only the canary, failed", r.Results)
	}
	if !strings.Contains(r.Why[canary], "exec[check]: exit status 1") {
		t.Errorf("why %q: want the failed resource", r.Why[canary])
	}
	if got := f.keys("deploy/target/"); len(got) != 0 {
		t.Errorf("targets left after the rollback: %v", got)
	}
	if got := f.keys("deploy/depool/"); len(got) != 0 {
		t.Errorf("depool keys after a halt: %v", got)
	}
	if c := f.current(); c != first.Number {
		t.Errorf("current %d: want %d, unchanged", c, first.Number)
	}
	until(t, 10*time.Second, "the canary back on deploy 1", func() bool {
		st := f.status(canary)
		return st.Deploy == first.Number && st.State == StateConverged
	})
	for _, h := range five {
		if st := f.status(h); st.Deploy != first.Number {
			t.Errorf("%s runs %d: want %d", h, st.Deploy, first.Number)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Within the budget, a failed host is depooled and the rollout goes on to
// completion: current moves, the targets go, the depool key stays. A later
// good deploy, on which that host converges, removes the key.
func TestRolloutDepoolThenComplete(t *testing.T) {
	f := newFleet(t)
	sp := spec(1, "2", "20%", 30*time.Second) // 20% of 5: one failure allowed
	canary := Plan(2, five, sp)[0][0]
	bad := "web1"
	if canary == bad {
		bad = "web2"
	}
	hosts := map[string]outcome{}
	for _, h := range five {
		hosts[h] = good
	}
	hosts[bad] = failsOn(2)
	f.deployed(hosts)

	ctx := context.Background()
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, sp); err != nil {
		t.Fatal(err)
	}
	// While it runs, a plain deploy is refused.
	if _, err := f.st.Put(ctx, testBundle(t, "meanwhile"), PutOptions{}); !errors.Is(err, ErrRolloutRunning) {
		t.Errorf("a plain deploy during the rollout: %v, want ErrRolloutRunning", err)
	}
	var versions []Rollout
	r, err := f.st.Drive(ctx, func(r Rollout) { versions = append(versions, r) })
	if err != nil {
		t.Fatal(err)
	}
	if r.State != RolloutCompleted || r.MaxFailures != 1 || r.Failures() != 1 {
		t.Fatalf("rollout %s, %d failures of a budget of %d (%s): want completed, 1 of 1", r.State, r.Failures(), r.MaxFailures, r.Reason)
	}
	if !slices.Equal(r.Depooled, []string{bad}) {
		t.Errorf("depooled %v: want [%s]", r.Depooled, bad)
	}
	if len(r.Batches) != 3 || len(r.Batches[0]) != 1 || len(r.Batches[1]) != 2 {
		t.Errorf("batches %v: want the canary, then 2, 2", r.Batches)
	}
	if c := f.current(); c != 2 {
		t.Errorf("current %d: want 2", c)
	}
	if got := f.keys("deploy/target/"); len(got) != 0 {
		t.Errorf("targets left after completion: %v", got)
	}
	if got := f.keys("deploy/depool/"); !mapsEqual(got, map[string]string{bad: "2"}) {
		t.Errorf("depool keys %v: want %s=2", got, bad)
	}
	// The failed host was depooled in the transaction that judged it.
	for _, v := range versions {
		if v.Results[bad] == HostFailed && !slices.Contains(v.Depooled, bad) {
			t.Errorf("a version of the record has %s failed but not depooled", bad)
		}
	}

	m3, err := f.st.Put(ctx, testBundle(t, "three"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	until(t, 10*time.Second, "the depool key removed by the next good deploy", func() bool {
		return len(f.keys("deploy/depool/")) == 0 && f.status(bad).Deploy == m3.Number
	})
}

// The driver killed between batches leaves a defined state: the batches
// done, the next not started (its hosts on the old deploy). Two drivers
// resuming at once finish it together without fighting: no version of the
// record goes back a batch or changes a host's judged result.
func TestRolloutResumeAfterKill(t *testing.T) {
	f := newFleet(t)
	hosts := map[string]outcome{}
	for _, h := range five {
		hosts[h] = good
	}
	first := f.deployed(hosts)
	ctx := context.Background()
	_, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, spec(1, "2", "0", 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, rev0, err := f.st.ReadRollout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dctx, kill := context.WithCancel(ctx)
	_, err = f.st.Drive(dctx, func(r Rollout) {
		if r.Batch == 2 { // batches 0 and 1 over, 2 not given yet
			kill()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("killed driver: %v, want context.Canceled", err)
	}
	r, _, err := f.st.ReadRollout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != RolloutRunning || r.Batch != 2 {
		t.Fatalf("after the kill: %s at batch %d, want running at 2", r.State, r.Batch)
	}
	for _, h := range r.Batches[2] {
		if res, ok := r.Results[h]; ok {
			t.Errorf("%s of the batch not started has result %q", h, res)
		}
		if st := f.status(h); st.Deploy != first.Number {
			t.Errorf("%s runs %d before its batch: want %d", h, st.Deploy, first.Number)
		}
	}
	if c := f.current(); c != first.Number {
		t.Errorf("current %d mid-rollout: want %d", c, first.Number)
	}

	var wg sync.WaitGroup
	results := make([]Rollout, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = f.st.Drive(ctx, nil) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil || results[i].State != RolloutCompleted {
			t.Fatalf("resume %d: %s, %v: want completed", i, results[i].State, errs[i])
		}
	}
	if c := f.current(); c != 2 {
		t.Errorf("current %d: want 2", c)
	}
	// Every version of the record since the start, in order.
	hist, err := f.c.Raw().Get(ctx, f.c.Namespace()+"deploy/rollout") // for the revision
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := f.c.Raw().Watch(wctx, f.c.Namespace()+"deploy/rollout", clientv3.WithRev(rev0))
	var prev *Rollout
	for versions := 0; prev == nil || prev.State == RolloutRunning; {
		resp := <-w
		if resp.Err() != nil {
			t.Fatal(resp.Err())
		}
		for _, ev := range resp.Events {
			versions++
			var v Rollout
			if err := json.Unmarshal(ev.Kv.Value, &v); err != nil {
				t.Fatal(err)
			}
			if prev != nil {
				if v.Batch < prev.Batch {
					t.Errorf("version %d: batch %d after %d", versions, v.Batch, prev.Batch)
				}
				for h, res := range prev.Results {
					if res != HostPending && v.Results[h] != res {
						t.Errorf("version %d: %s went from %s to %q", versions, h, res, v.Results[h])
					}
				}
			}
			prev = &v
		}
		if ev := resp.Events; len(ev) > 0 && ev[len(ev)-1].Kv.ModRevision == hist.Kvs[0].ModRevision {
			break
		}
	}
}

// A host offline when its batch is given the deploy catches up when it
// comes back: it reads its target, converges, and counts as done.
func TestRolloutOfflineHostCatchesUp(t *testing.T) {
	f := newFleet(t)
	hosts := map[string]outcome{}
	for _, h := range five {
		hosts[h] = good
	}
	f.deployed(hosts)
	ctx := context.Background()
	sp := spec(0, "1", "0", 30*time.Second) // one host per batch
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, sp); err != nil {
		t.Fatal(err)
	}
	f.stop("web4") // in the rollout (alive at its start), then gone
	done := make(chan Rollout, 1)
	go func() {
		r, err := f.st.Drive(ctx, nil)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	until(t, 20*time.Second, "web4 given deploy 2 while offline", func() bool {
		return f.keys("deploy/target/")["web4"] == "2"
	})
	if st := f.status("web4"); st.Host != "" {
		t.Fatalf("web4 has a status while offline: %+v", st)
	}
	f.start("web4", good)
	r := <-done
	if r.State != RolloutCompleted || r.Results["web4"] != HostDone {
		t.Fatalf("rollout %s, web4 %s (%s): want completed, done", r.State, r.Results["web4"], r.Why["web4"])
	}
	if st := f.status("web4"); st.Deploy != 2 {
		t.Errorf("web4 runs %d: want 2", st.Deploy)
	}
}

// --abort halts a running rollout with rollback, even one started with
// --no-rollback; the driver waiting on it sees that at once.
func TestRolloutAbort(t *testing.T) {
	f := newFleet(t)
	hosts := map[string]outcome{}
	for _, h := range five {
		hosts[h] = func(n int64) string {
			if n == 2 {
				return StateConverging // never converges on 2
			}
			return StateConverged
		}
	}
	f.deployed(hosts)
	ctx := context.Background()
	sp := spec(2, "2", "0", time.Minute)
	sp.NoRollback = true
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, sp); err != nil {
		t.Fatal(err)
	}
	done := make(chan Rollout, 1)
	go func() {
		r, err := f.st.Drive(ctx, nil)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	until(t, 10*time.Second, "the canaries given deploy 2", func() bool { return len(f.keys("deploy/target/")) == 2 })
	start := time.Now()
	a, err := f.st.AbortRollout(ctx, "aborted by the test")
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	t.Logf("driver returned %v after the abort", time.Since(start).Round(time.Millisecond))
	if a.State != RolloutAborted || r.State != RolloutAborted || !strings.Contains(r.Reason, "rolled back to 1") {
		t.Fatalf("abort: %s, driver: %s (%s): want aborted, rolled back", a.State, r.State, r.Reason)
	}
	if got := f.keys("deploy/target/"); len(got) != 0 {
		t.Errorf("targets left after abort: %v", got)
	}
	if c := f.current(); c != 1 {
		t.Errorf("current %d: want 1", c)
	}
	if _, err := f.st.AbortRollout(ctx, "again"); !errors.Is(err, ErrNoRollout) {
		t.Errorf("second abort: %v, want ErrNoRollout", err)
	}
	// Over, it no longer blocks deploys.
	if _, err := f.st.Put(ctx, testBundle(t, "three"), PutOptions{}); err != nil {
		t.Errorf("deploy after the abort: %v", err)
	}
}

// A host that has not converged within the batch timeout fails; beyond
// the budget (0) that halts the rollout.
func TestRolloutBatchTimeout(t *testing.T) {
	f := newFleet(t)
	hosts := map[string]outcome{"web1": good, "web2": func(n int64) string {
		if n == 2 {
			return StateConverging
		}
		return StateConverged
	}}
	f.deployed(hosts)
	ctx := context.Background()
	const timeout = 1500 * time.Millisecond
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, spec(0, "100%", "0", timeout)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := f.st.Drive(ctx, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("halted after %v (timeout %v): %s: %s", took.Round(time.Millisecond), timeout, r.Reason, r.Why["web2"])
	if r.State != RolloutHalted || r.Results["web2"] != HostFailed || r.Results["web1"] != HostDone {
		t.Fatalf("rollout %s, results %v: want halted, web2 failed, web1 done", r.State, r.Results)
	}
	if !strings.Contains(r.Why["web2"], "not converged on 2 within the batch timeout (1.5s)") {
		t.Errorf("why %q: want the timeout", r.Why["web2"])
	}
	if took < timeout || took > timeout+3*time.Second {
		t.Errorf("halted after %v: want just after the %v timeout", took, timeout)
	}
	if got := f.keys("deploy/target/"); len(got) != 0 {
		t.Errorf("targets left: %v", got)
	}
	until(t, 10*time.Second, "web1 back on 1", func() bool { return f.status("web1").Deploy == 1 })
}

// --no-rollback leaves the hosts given the deploy on it; the next plain
// deploy moves everyone, their targets included.
func TestRolloutNoRollback(t *testing.T) {
	f := newFleet(t)
	f.deployed(map[string]outcome{"web1": failsOn(2), "web2": good})
	ctx := context.Background()
	sp := spec(0, "1", "0", 30*time.Second)
	sp.NoRollback = true
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "two"), PutOptions{}, sp); err != nil {
		t.Fatal(err)
	}
	r, err := f.st.Drive(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != RolloutHalted || !mapsEqual(f.keys("deploy/target/"), map[string]string{"web1": "2"}) {
		t.Fatalf("rollout %s, targets %v: want halted, web1 left on 2", r.State, f.keys("deploy/target/"))
	}
	if _, ok := r.Results["web2"]; ok || f.status("web2").Deploy != 1 {
		t.Errorf("web2, not reached, runs %d (result %q): want 1", f.status("web2").Deploy, r.Results["web2"])
	}
	m, err := f.st.Put(ctx, testBundle(t, "three"), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.keys("deploy/target/"); len(got) != 0 {
		t.Errorf("targets left after a plain deploy: %v", got)
	}
	until(t, 10*time.Second, "both hosts on deploy 3", func() bool {
		return f.status("web1").Deploy == m.Number && f.status("web2").Deploy == m.Number
	})
}

func TestRolloutRefused(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	if _, _, err := f.st.StartRollout(ctx, testBundle(t, "x"), PutOptions{}, spec(1, "1", "0", time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("a rollout with no current deploy: %v, want ErrNotFound", err)
	}
	if _, err := f.st.Put(ctx, testBundle(t, "one"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.st.StartRollout(ctx, testBundle(t, "x"), PutOptions{}, spec(1, "1", "0", time.Second))
	if err == nil || !strings.Contains(err.Error(), "no host is running a deploy") {
		t.Errorf("a rollout to no host: %v", err)
	}
	if l, _ := f.st.List(ctx); len(l) != 1 {
		t.Errorf("%d deploys stored: a refused rollout stores nothing", len(l))
	}
}

func TestParseAmount(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Amount
		wantErr string
	}{
		{"3", Amount{N: 3}, ""},
		{"0", Amount{N: 0}, ""},
		{"0%", Amount{N: 0, Percent: true}, ""},
		{"100%", Amount{N: 100, Percent: true}, ""},
		{"25%", Amount{N: 25, Percent: true}, ""},
		{"150%", Amount{}, `--batch "150%": a percentage of the hosts is at most 100%`},
		{"-1", Amount{}, `--batch "-1": cannot be negative`},
		{"-5%", Amount{}, `--batch "-5%": cannot be negative`},
		{"abc", Amount{}, `--batch "abc": want a number of hosts (3) or a percentage of them (25%)`},
		{"", Amount{}, `--batch "": want a number`},
		{"%", Amount{}, `--batch "%": want a number`},
		{"1.5", Amount{}, `--batch "1.5": want a number`},
	} {
		got, err := ParseAmount("--batch", tc.in)
		if tc.wantErr != "" {
			var ae *AmountError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: %v, want an *AmountError saying %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v: want %+v", tc.in, got, err, tc.want)
		}
	}
	// A batch of no hosts never ends: refused, as a count or a percentage.
	for _, b := range []string{"0", "0%"} {
		sp := spec(0, b, "0", time.Second)
		if err := sp.Check(); err == nil || !strings.Contains(err.Error(), `--batch "`+b+`": a batch needs at least one host`) {
			t.Errorf("--batch %s: %v", b, err)
		}
	}
	if err := spec(-1, "1", "0", time.Second).Check(); err == nil {
		t.Error("--canary -1 accepted")
	}
	if err := spec(0, "1", "0", 0).Check(); err == nil {
		t.Error("--batch-timeout 0 accepted")
	}
	// Rounding: a batch rounds up (at least one host), a budget down.
	for _, tc := range []struct {
		a     string
		hosts int
		up    bool
		want  int
	}{
		{"10%", 5, true, 1}, {"10%", 5, false, 0}, {"50%", 5, true, 3}, {"50%", 5, false, 2},
		{"100%", 5, true, 5}, {"0%", 5, false, 0}, {"1%", 1000, false, 10}, {"7", 5, true, 7},
	} {
		a, _ := ParseAmount("x", tc.a)
		if got := a.of(tc.hosts, tc.up); got != tc.want {
			t.Errorf("%s of %d (up %v): %d, want %d", tc.a, tc.hosts, tc.up, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	sp := spec(2, "40%", "0", time.Second)
	p := Plan(7, five, sp)
	if len(p) != 3 || len(p[0]) != 2 || len(p[1]) != 2 || len(p[2]) != 1 {
		t.Fatalf("plan %v: want 2 canaries, then batches of 2 (40%% of 5), 1", p)
	}
	var all []string
	for _, b := range p {
		all = append(all, b...)
	}
	slices.Sort(all)
	if !slices.Equal(all, five) {
		t.Errorf("plan %v: every host exactly once", p)
	}
	reversed := slices.Clone(five)
	slices.Reverse(reversed)
	if fmt.Sprint(Plan(7, reversed, sp)) != fmt.Sprint(p) {
		t.Error("the plan depends on the order the hosts were listed in")
	}
	if p0 := Plan(1, five, spec(0, "2", "0", time.Second)); len(p0[0]) != 0 || len(p0) != 4 {
		t.Errorf("no canaries: %v: want an empty batch 0, then 2, 2, 1", p0)
	}
}

// A rollout's end moves current and deletes the targets in one
// transaction: Watch must deliver the new number only, never the old
// current in between (the host would swap back and forth).
func TestWatchRolloutEndDeliversNoOldNumber(t *testing.T) {
	st, c := testStore(t)
	cli := c.Raw()
	ctx, cancel := context.WithCancel(context.Background())
	ch := st.Watch(ctx, "web1")
	defer func() {
		cancel()
		for range ch {
		}
	}()
	receive := func(want int64) {
		t.Helper()
		select {
		case n := <-ch:
			if n != want {
				t.Fatalf("delivered %d, want %d", n, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d not delivered", want)
		}
	}
	if _, err := cli.Put(ctx, st.currentKey(), "1"); err != nil {
		t.Fatal(err)
	}
	receive(1)
	for n := int64(2); n < 22; n++ {
		if _, err := cli.Put(ctx, st.targetKey("web1"), fmt.Sprint(n)); err != nil {
			t.Fatal(err)
		}
		receive(n)
		if _, err := cli.Txn(ctx).Then(clientv3.OpPut(st.currentKey(), fmt.Sprint(n)), clientv3.OpDelete(st.targetKey("web1"))).Commit(); err != nil {
			t.Fatal(err)
		}
		// The next target put is a barrier: anything delivered before it
		// is the end of rollout n.
		if _, err := cli.Put(ctx, st.targetKey("web1"), fmt.Sprint(n+1)); err != nil {
			t.Fatal(err)
		}
		receive(n + 1)
		if _, err := cli.Delete(ctx, st.targetKey("web1")); err != nil {
			t.Fatal(err)
		}
		receive(n)
	}
}
