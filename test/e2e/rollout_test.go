package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeAgent stands in for `mgmt run --from-cluster` until both are merged:
// it follows its target (else current) and writes a status record under a
// lease saying what state says of the number: converged, failed, converging.
func fakeAgent(t *testing.T, c *etcd.Client, host string, state func(int64) string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	st := deploy.NewStore(c)
	wg.Go(func() {
		lease, err := c.Raw().Grant(ctx, 10)
		if err != nil {
			return
		}
		defer c.Raw().Revoke(context.Background(), lease.ID)
		for n := range st.Watch(ctx, host) {
			s := deploy.HostStatus{Host: host, Deploy: n, Wanted: n, State: state(n), UpdatedAt: time.Now().UTC()}
			if s.State == deploy.StateFailed {
				s.Failed = []deploy.FailedRes{{Res: "exec[healthcheck]", Err: "exit status 1"}}
			}
			b, _ := json.Marshal(s)
			c.Raw().Put(ctx, c.Namespace()+"status/"+host, string(b), clientv3.WithLease(lease.ID))
			if s.State == deploy.StateConverged {
				st.Repool(ctx, host, n)
			}
		}
	})
}

// `mgmt deploy --canary/--batch/--max-failures` follows the rollout to its
// end (0 completed, 1 halted); --status shows it; a killed deploy is left
// running in etcd and --abort finishes it.
func TestDeployRolloutCLI(t *testing.T) {
	seeds, _ := deployCluster(t)
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seeds}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // after the fake agents' cleanups
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"graph.yaml": motdGraph, "files/motd": "one\n"})
	if _, stderr, rc := mgmt(t, dir, "deploy", "--file", "graph.yaml", "--seeds", seeds); rc != 0 {
		t.Fatalf("first deploy: %d %s", rc, stderr)
	}
	hosts := []string{"web1", "web2", "web3", "web4"}
	sp := deploy.RolloutSpec{Canary: 1, Batch: deploy.Amount{N: 2}}
	badHost := deploy.Plan(2, hosts, sp)[1][0] // not the canary: within the budget
	for _, h := range hosts {
		fakeAgent(t, c, h, func(n int64) string {
			switch {
			case n == 2 && h == badHost, n == 3: // every host fails on 3
				return deploy.StateFailed
			case n == 4: // and none converges on 4
				return deploy.StateConverging
			}
			return deploy.StateConverged
		})
	}
	st := deploy.NewStore(c)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("4 hosts on deploy 1", func() bool {
		all, _, _ := st.ReadStatuses(context.Background())
		return len(all) == 4
	})

	// Within the budget: completed, exit 0, the failed host depooled.
	writeTree(t, dir, map[string]string{"files/motd": "two\n"})
	stdout, stderr, rc := mgmt(t, dir, "deploy", "-f", "graph.yaml", "--seeds", seeds, "-m", "motd two",
		"--canary", "1", "--batch", "2", "--max-failures", "25%", "--batch-timeout", "10s")
	t.Logf("$ mgmt deploy -f graph.yaml -m 'motd two' --canary 1 --batch 2 --max-failures 25%% --batch-timeout 10s\n%s%s(exit %d)", stdout, stderr, rc)
	if rc != 0 || stdout != "2\n" || !strings.Contains(stderr, "rollout of 2 completed") || !strings.Contains(stderr, badHost+" failed: exec[healthcheck]: exit status 1 (depooled)") {
		t.Fatalf("rollout within budget: rc %d, stdout %q, stderr:\n%s", rc, stdout, stderr)
	}
	stdout, _, rc = mgmt(t, dir, "deploy", "--status", "--seeds", seeds)
	t.Logf("$ mgmt deploy --status\n%s", stdout)
	if rc != 0 || !strings.Contains(stdout, "rollout of 2 (from 1): completed") {
		t.Fatalf("--status: rc %d:\n%s", rc, stdout)
	}
	stdout, _, _ = mgmt(t, dir, "deploy", "--status", "--json", "--seeds", seeds)
	var r deploy.Rollout
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.State != deploy.RolloutCompleted || r.Results[badHost] != deploy.HostFailed {
		t.Fatalf("--status --json: %v: %s", err, stdout)
	}

	// Every host fails on 3: the canary halts it, exit 1, rolled back.
	writeTree(t, dir, map[string]string{"files/motd": "three\n"})
	stdout, stderr, rc = mgmt(t, dir, "deploy", "-f", "graph.yaml", "--seeds", seeds, "--canary", "1", "--batch", "50%", "--batch-timeout", "10s")
	t.Logf("$ mgmt deploy -f graph.yaml --canary 1 --batch 50%% --batch-timeout 10s\n%s%s(exit %d)", stdout, stderr, rc)
	if rc != 1 || !strings.Contains(stderr, "rollout of 3 halted at batch 0: 1 of 1 canaries failed: rolled back to 2") {
		t.Fatalf("failing canary: rc %d, stderr:\n%s", rc, stderr)
	}
	if cur, _ := st.Current(context.Background()); cur.Number != 2 {
		t.Errorf("current %d after the halt: want 2", cur.Number)
	}

	// Killed half-way (SIGINT while the first batch has not converged on
	// 4, with a long timeout): left running; --status shows it; --abort
	// rolls it back.
	writeTree(t, dir, map[string]string{"files/motd": "four\n"})
	cmd := exec.Command(bin, "deploy", "-f", "graph.yaml", "--seeds", seeds, "--batch", "1", "--batch-timeout", "1h")
	cmd.Dir = dir
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor("the rollout of 4 under way", func() bool {
		r, _, err := st.ReadRollout(context.Background())
		return err == nil && r.Deploy == 4 && r.Batch >= 1
	})
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	t.Logf("killed deploy:\n%s", out.String())
	if exitCode(err) != 1 || !strings.Contains(out.String(), "left running at batch") {
		t.Fatalf("interrupted rollout: %v:\n%s", err, out.String())
	}
	stdout, _, _ = mgmt(t, dir, "deploy", "--status", "--seeds", seeds)
	t.Logf("$ mgmt deploy --status\n%s", stdout)
	if !strings.Contains(stdout, "rollout of 4 (from 2): running") {
		t.Fatalf("--status after the kill:\n%s", stdout)
	}
	_, stderr, rc = mgmt(t, dir, "deploy", "--abort", "--seeds", seeds)
	t.Logf("$ mgmt deploy --abort\n%s(exit %d)", stderr, rc)
	if rc != 0 || !strings.Contains(stderr, "rollout of 4 aborted") {
		t.Fatalf("--abort: rc %d: %s", rc, stderr)
	}
	if _, stderr, rc = mgmt(t, dir, "deploy", "--resume", "--seeds", seeds); rc != 1 || !strings.Contains(stderr, "rollout of 4 aborted") {
		t.Errorf("--resume of an aborted rollout: rc %d: %s", rc, stderr)
	}
	resp, err := c.Raw().Get(context.Background(), c.Namespace()+"deploy/target/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Errorf("targets after the abort: %v %v", resp, err)
	}
}
