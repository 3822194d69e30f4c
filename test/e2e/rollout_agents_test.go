package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// poolGraph is the graph of TestRolloutRealAgents: every host writes a
// mark saying which deploy it runs, exports a backend file
// (@@web-<host>) and collects every other host's into its pool
// directory; extra (exec resources) is added.
func poolGraph(out, mark, extra string) string {
	if extra != "" {
		extra = "  exec:\n" + extra
	}
	return fmt.Sprintf(`resources:
  file:
  - name: "mark-{{ .Hostname }}"
    path: %[1]s/{{ .Hostname }}/mark
    content: "%[2]s\n"
  - name: "@@web-{{ .Hostname }}"
    path: %[1]s/{{ .Hostname }}/pool/web-{{ .Hostname }}
    content: "backend {{ .Hostname }}\n"
%[3]scollect:
- kind: file
  pattern: %[1]s/{{ .Hostname }}/pool/
`, out, mark, extra)
}

// failOn is an exec that fails at once, on host h only.
func failOn(h string) string {
	return fmt.Sprintf("  - name: healthcheck\n    cmd: /bin/false\n    meta: {hosts: [%q], retry: 0}\n", h)
}

// slowOn is an exec that takes d to converge, on host h only.
func slowOn(name, h string, d time.Duration) string {
	return fmt.Sprintf("  - name: %s\n    cmd: /bin/sleep %g\n    meta: {hosts: [%q]}\n", name, d.Seconds(), h)
}

// bg is a `mgmt deploy` running in the background.
type bg struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startDeploy(t *testing.T, dir string, args ...string) *bg {
	t.Helper()
	b := &bg{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan error, 1)}
	b.cmd.Dir = dir
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait() }()
	t.Cleanup(func() {
		if b.cmd.ProcessState == nil {
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

func (b *bg) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-b.done:
		return exitCode(err)
	case <-time.After(limit):
		t.Fatalf("mgmt deploy still running after %v:\n%s", limit, b.out.String())
		return -1
	}
}

// TestRolloutRealAgents drives staged rollouts over five real agents
// (`mgmt run --from-cluster`, client-only, one embedded etcd member):
//   - a canary that fails (a resource selected onto it only) halts the
//     rollout with rollback: exit 1, every host back on (or still on) the
//     old deploy, the others never given the new one;
//   - a host failing within the budget is depooled: its export leaves
//     etcd and the collector's graph within a second; a later good deploy
//     re-pools it and the collector gets it back;
//   - `mgmt deploy` killed (SIGKILL) while a slow host converges leaves
//     the rollout running: --status shows it, --resume completes it;
//   - an agent stopped during a rollout and started again before its
//     batch times out catches up and counts as done;
//   - two deploys at once both store, with consecutive numbers, and every
//     host ends on the newer.
func TestRolloutRealAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and five agents")
	}
	seed, _ := deployCluster(t)
	base := t.TempDir()
	out := filepath.Join(base, "out")
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seed}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	st := deploy.NewStore(c)
	ctx := context.Background()

	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	args := map[string][]string{}
	agents := map[string]*agent{}
	collector := "h4" // not the host that fails within the budget (checked below)
	dot := filepath.Join(base, "collector.dot")
	for _, h := range hosts {
		for _, d := range []string{"", "pool"} {
			if err := os.MkdirAll(filepath.Join(out, h, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		a := []string{"run", "--from-cluster", "--hostname", h, "--prefix", filepath.Join(base, "p-"+h), "--seeds", seed, "--no-server"}
		if h == collector {
			a = append(a, "--graphviz", dot)
		}
		args[h] = a
		agents[h] = start(t, a...)
	}
	wait.For(t, 30*time.Second, "five hosts in mgmt status", func() bool { return len(fleetStatus(t, seed)) == 5 })

	src := filepath.Join(base, "src")
	statusText := func() string {
		o, _, _ := mgmt(t, "", "status", "--seeds", seed)
		return o
	}
	allOn := func(n int64, hs ...string) {
		t.Helper()
		wait.Until(t, 30*time.Second, func() bool {
			s := fleetStatus(t, seed)
			for _, h := range hs {
				if s[h].Deploy != n || s[h].State != deploy.StateConverged {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("%v converged on deploy %d:\n%s", hs, n, statusText()) })
	}
	plain := func(mark, extra string) int64 {
		t.Helper()
		writeTree(t, src, map[string]string{"graph.yaml": poolGraph(out, mark, extra)})
		stdout, stderr, rc := mgmt(t, src, "deploy", "--file", "graph.yaml", "--seeds", seed, "-m", mark)
		if rc != 0 {
			t.Fatalf("mgmt deploy %s: exit %d: %s", mark, rc, stderr)
		}
		var n int64
		fmt.Sscan(stdout, &n)
		return n
	}
	current := func() int64 {
		t.Helper()
		m, err := st.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m.Number
	}
	collected := func(h string) bool { return strings.Contains(readFile(dot), "file[web-"+h+"]") }

	d1 := plain("deploy one", "")
	allOn(d1, hosts...)
	wait.For(t, 10*time.Second, "the collector collecting the other four", func() bool {
		for _, h := range hosts {
			if h != collector && !collected(h) {
				return false
			}
		}
		return true
	})

	// 1. The canary fails: halted, rolled back, exit 1.
	sp := deploy.RolloutSpec{Canary: 1, Batch: deploy.Amount{N: 2}}
	canary := deploy.Plan(d1+1, hosts, sp)[0][0]
	writeTree(t, src, map[string]string{"graph.yaml": poolGraph(out, "deploy two", failOn(canary))})
	stdout, stderr, rc := mgmt(t, src, "deploy", "-f", "graph.yaml", "--seeds", seed,
		"--canary", "1", "--batch", "2", "--batch-timeout", "30s")
	t.Logf("$ mgmt deploy --canary 1 --batch 2 --batch-timeout 30s (fails on %s)\n%s%s(exit %d)", canary, stdout, stderr, rc)
	d2 := d1 + 1
	want := fmt.Sprintf("rollout of %d halted at batch 0: 1 of 1 canaries failed: rolled back to %d", d2, d1)
	if rc != 1 || stdout != fmt.Sprintf("%d\n", d2) || !strings.Contains(stderr, want) ||
		!strings.Contains(stderr, canary+" failed: exec[healthcheck]") {
		t.Fatalf("failing canary: exit %d, stdout %q, want exit 1 and %q", rc, stdout, want)
	}
	allOn(d1, hosts...) // the canary back on 1, the others never moved
	if cur := current(); cur != d1 {
		t.Errorf("current is %d after the halt, want %d", cur, d1)
	}
	for _, h := range hosts {
		got := strings.Contains(agents[h].out.String(), fmt.Sprintf(`msg="new deploy" deploy=%d`, d2))
		if got != (h == canary) {
			t.Errorf("%s given deploy %d: %v; only the canary %s should have been", h, d2, got, canary)
		}
		if m := readFile(filepath.Join(out, h, "mark")); m != "deploy one\n" {
			t.Errorf("%s's mark %q after the rollback", h, m)
		}
	}

	// 2. One host fails within the budget: depooled, its export leaves
	// the collector's graph; a later good deploy brings it back.
	d3 := d2 + 1
	sp = deploy.RolloutSpec{Canary: 1, Batch: deploy.Amount{N: 2}}
	plan := deploy.Plan(d3, hosts, sp)
	bad := plan[1][0]
	if bad == collector {
		bad = plan[1][1]
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	depoolEvents := c.Raw().Watch(wctx, c.Namespace()+"deploy/depool/"+bad)
	writeTree(t, src, map[string]string{"graph.yaml": poolGraph(out, "deploy three", failOn(bad))})
	roll := startDeploy(t, src, "deploy", "-f", "graph.yaml", "--seeds", seed,
		"--canary", "1", "--batch", "2", "--max-failures", "1", "--batch-timeout", "30s")
	var depooledAt time.Time
	select {
	case resp := <-depoolEvents:
		depooledAt = time.Now()
		if len(resp.Events) == 0 || resp.Events[0].Type != clientv3.EventTypePut {
			t.Fatalf("depool watch: %+v %v", resp.Events, resp.Err())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not depooled within 60 s:\n%s", bad, roll.out.String())
	}
	wait.Until(t, time.Second, func() bool { return !collected(bad) }, func() string {
		return fmt.Sprintf("the collector %s still collects %s's export 1 s after it was depooled", collector, bad)
	})
	dropped := time.Since(depooledAt)
	if rc := roll.wait(t, 60*time.Second); rc != 0 || !strings.Contains(roll.out.String(), fmt.Sprintf("rollout of %d completed", d3)) ||
		!strings.Contains(roll.out.String(), bad+" failed: exec[healthcheck]: ") {
		t.Fatalf("rollout within the budget: exit %d:\n%s", rc, roll.out.String())
	}
	t.Logf("$ mgmt deploy --canary 1 --batch 2 --max-failures 1 (fails on %s)\n%s", bad, roll.out.String())
	t.Logf("%s depooled: its export left the collector's graph %v after the depool key was set", bad, dropped.Round(time.Millisecond))
	resp, err := c.Raw().Get(ctx, c.Namespace()+"exported/"+bad+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("%s's exports in etcd while depooled: %v %v", bad, resp, err)
	}
	wait.Until(t, 10*time.Second, func() bool { return fleetStatus(t, seed)[bad].State == deploy.StateDepooled },
		func() string { return bad + " depooled in status:\n" + statusText() })
	if cur := current(); cur != d3 {
		t.Errorf("current is %d after the rollout completed, want %d", cur, d3)
	}
	d4 := plain("deploy four", "")
	var repooledAt time.Time
	select {
	case resp := <-depoolEvents: // the next event after the put
		repooledAt = time.Now()
		if len(resp.Events) == 0 || resp.Events[0].Type != clientv3.EventTypeDelete {
			t.Fatalf("depool watch after deploy %d: %+v %v", d4, resp.Events, resp.Err())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not re-pooled by deploy %d:\n%s", bad, d4, statusText())
	}
	wait.Until(t, time.Second, func() bool { return collected(bad) }, func() string {
		return fmt.Sprintf("the collector lacks %s's export 1 s after it was re-pooled", bad)
	})
	t.Logf("%s re-pooled by deploy %d: back in the collector's graph %v after its depool key went", bad, d4, time.Since(repooledAt).Round(time.Millisecond))
	allOn(d4, hosts...)

	// 3. `mgmt deploy` killed while h1 takes its time; --status, --resume.
	d5 := d4 + 1
	writeTree(t, src, map[string]string{"graph.yaml": poolGraph(out, "deploy five", slowOn("slow5", "h1", 6*time.Second))})
	roll = startDeploy(t, src, "deploy", "-f", "graph.yaml", "--seeds", seed, "--batch", "2", "--batch-timeout", "2m")
	wait.For(t, 30*time.Second, "h1 given deploy 5", func() bool {
		r, _, err := st.ReadRollout(ctx)
		return err == nil && r.Deploy == d5 && r.Results["h1"] == deploy.HostPending
	})
	roll.cmd.Process.Signal(syscall.SIGKILL)
	roll.wait(t, 5*time.Second)
	stdout, _, rc = mgmt(t, "", "deploy", "--status", "--seeds", seed)
	t.Logf("$ mgmt deploy --status (the deploying process killed)\n%s", stdout)
	if rc != 0 || !strings.Contains(stdout, fmt.Sprintf("rollout of %d (from %d): running at batch 1/3", d5, d4)) ||
		!regexpMatch(`batch 1/3\s+h1\s+pending`, stdout) || !regexpMatch(`batch 3/3\s+h5\s+-`, stdout) {
		t.Fatalf("--status after the kill: exit %d:\n%s", rc, stdout)
	}
	_, stderr, rc = mgmt(t, "", "deploy", "--resume", "--seeds", seed)
	t.Logf("$ mgmt deploy --resume\n%s(exit %d)", stderr, rc)
	if rc != 0 || !strings.Contains(stderr, fmt.Sprintf("rollout of %d completed", d5)) {
		t.Fatalf("--resume: exit %d:\n%s", rc, stderr)
	}
	if cur := current(); cur != d5 {
		t.Errorf("current is %d after --resume, want %d", cur, d5)
	}
	allOn(d5, hosts...)

	// 4. h5 stopped during the rollout, started again while its batch
	// waits: it catches up, done.
	d6 := d5 + 1
	writeTree(t, src, map[string]string{"graph.yaml": poolGraph(out, "deploy six", slowOn("slow6", "h1", 4*time.Second))})
	roll = startDeploy(t, src, "deploy", "-f", "graph.yaml", "--seeds", seed, "--batch", "1", "--batch-timeout", "1m")
	wait.For(t, 30*time.Second, "the rollout of 6 under way", func() bool {
		r, _, err := st.ReadRollout(ctx)
		return err == nil && r.Deploy == d6 && r.Results["h1"] == deploy.HostPending
	})
	agents["h5"].cmd.Process.Signal(syscall.SIGTERM)
	if code := agents["h5"].wait(t, 10*time.Second); code != 0 {
		t.Fatalf("h5 stopped with exit %d", code)
	}
	wait.Until(t, 60*time.Second, func() bool {
		r, _, err := st.ReadRollout(ctx)
		return err == nil && r.Deploy == d6 && r.Results["h5"] == deploy.HostPending
	}, func() string { return "h5's batch reached:\n" + roll.out.String() })
	if s := fleetStatus(t, seed)["h5"]; s.State != deploy.StateLost || s.Deploy != d5 {
		t.Errorf("h5 offline while its batch waits: status %s on %d, want lost on %d", s.State, s.Deploy, d5)
	}
	agents["h5"] = start(t, args["h5"]...)
	if rc := roll.wait(t, 60*time.Second); rc != 0 || !strings.Contains(roll.out.String(), fmt.Sprintf("rollout of %d completed", d6)) {
		t.Fatalf("rollout with h5 offline then back: exit %d:\n%s", rc, roll.out.String())
	}
	t.Logf("$ mgmt deploy --batch 1 (h5 stopped, then started in its batch)\n%s", roll.out.String())
	if r, _, _ := st.ReadRollout(ctx); r.Results["h5"] != deploy.HostDone {
		t.Errorf("h5's result %q, want done", r.Results["h5"])
	}
	allOn(d6, hosts...)
	if m := readFile(filepath.Join(out, "h5", "mark")); m != "deploy six\n" {
		t.Errorf("h5's mark %q after catching up", m)
	}

	// 5. Two deploys at once: both stored, consecutive numbers; every
	// host ends on the newer.
	marks := []string{"race a", "race b"}
	dirs := make([]string, 2)
	for i, m := range marks {
		dirs[i] = filepath.Join(base, fmt.Sprintf("race%d", i))
		writeTree(t, dirs[i], map[string]string{"graph.yaml": poolGraph(out, m, "")})
	}
	var wg sync.WaitGroup
	nums := make([]int64, 2)
	for i := range marks {
		wg.Go(func() {
			cmd := exec.Command(bin, "deploy", "--file", "graph.yaml", "--seeds", seed, "-m", marks[i])
			cmd.Dir = dirs[i]
			var errb strings.Builder
			cmd.Stderr = &errb
			o, err := cmd.Output()
			if err != nil {
				t.Errorf("concurrent deploy %d: %v: %s", i, err, errb.String())
			}
			fmt.Sscan(string(o), &nums[i])
		})
	}
	wg.Wait()
	sorted := slices.Sorted(slices.Values(nums))
	if sorted[0] != d6+1 || sorted[1] != d6+2 {
		t.Fatalf("two deploys at once got numbers %v, want %d and %d", nums, d6+1, d6+2)
	}
	newer := marks[slices.Index(nums, sorted[1])]
	allOn(sorted[1], hosts...)
	for _, h := range hosts {
		if m := readFile(filepath.Join(out, h, "mark")); m != newer+"\n" {
			t.Errorf("%s's mark %q, want %q (deploy %d)", h, m, newer, sorted[1])
		}
	}
	ms, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, m := range ms {
		msgs = append(msgs, m.Message)
	}
	if !slices.Contains(msgs, "race a") || !slices.Contains(msgs, "race b") {
		t.Errorf("the history lacks one of the racing deploys: %q", msgs)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
