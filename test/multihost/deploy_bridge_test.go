package multihost

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// TestDeployOverBridgeCutAndHeal deploys to four agents run
// --from-cluster on test hosts on a bridge: a runs the etcd member, b, c
// and d are its clients over the bridge. Then d is cut off (its link
// down) and two more deploys are made: a, b and c take them, `mgmt status`
// shows d lost (its lease expired) on the old deploy; once the link is up
// again d catches up to the newest deploy and shows converged on it.
func TestDeployOverBridgeCutAndHeal(t *testing.T) {
	t.Parallel()
	testhost.Require(t)
	testhost.RequireTools(t, "ip")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	began := time.Now()

	n := testhost.NewNetworkT(t)
	names := []string{"a", "b", "c", "d"}
	hosts := map[string]*testhost.Host{}
	var hs []*testhost.Host
	for _, name := range names {
		h := n.StartT(t, testhost.Options{Name: name})
		hosts[name] = h
		hs = append(hs, h)
	}
	mgmt := testhost.InstallMgmt(t, hs...)
	seed := "http://" + hosts["a"].Addr() + ":2379"
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	t.Cleanup(procCancel)
	for _, name := range names {
		h := hosts[name]
		args := []string{mgmt, "run", "--from-cluster", "--hostname", name, "--prefix", "/var/lib/mgmt"}
		if name == "a" {
			args = append(args, "--client-urls", seed, "--server-urls", "http://"+h.Addr()+":2380")
		} else {
			args = append(args, "--no-server", "--seeds", seed)
		}
		p, err := h.Spawn(procCtx, args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Stop(10 * time.Second); err != nil {
				t.Errorf("mgmt on %s: %v", name, err)
			}
			if t.Failed() {
				t.Logf("mgmt on %s:\n%s", name, p.Output())
			}
		})
	}

	// Deploys are made, and status read, from inside a.
	a := hosts["a"]
	status := func() map[string]deploy.HostStatus {
		out, err := a.Run(ctx, mgmt, "status", "--json", "--seeds", seed)
		if err != nil {
			return nil
		}
		var all []deploy.HostStatus
		if json.Unmarshal(out, &all) != nil {
			return nil
		}
		m := map[string]deploy.HostStatus{}
		for _, s := range all {
			m[s.Host] = s
		}
		return m
	}
	statusText := func() string {
		out, err := a.Run(ctx, mgmt, "status", "--seeds", seed)
		if err != nil {
			return fmt.Sprintf("%s(%v)", out, err)
		}
		return string(out)
	}
	mark := func(name string) string {
		b, _ := hosts[name].ReadFile("/root/mark")
		return string(b)
	}
	deployed := func(k int) int64 {
		t.Helper()
		g := fmt.Sprintf("resources:\n  file:\n  - name: mark\n    path: /root/mark\n    content: \"deploy %d on {{ .Hostname }}\\n\"\n", k)
		if err := a.WriteFile("/root/site/graph.yaml", []byte(g), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := a.Run(ctx, mgmt, "deploy", "--file", "/root/site/graph.yaml", "--seeds", seed, "-m", fmt.Sprint("deploy ", k))
		if err != nil {
			t.Fatalf("mgmt deploy %d: %v", k, err)
		}
		var num int64
		fmt.Sscan(string(out), &num)
		return num
	}
	if err := a.MkdirAll("/root/site", 0o755); err != nil {
		t.Fatal(err)
	}
	onDeploy := func(num int64, k int, who ...string) func() bool {
		return func() bool {
			st := status()
			for _, h := range who {
				if s := st[h]; s.Deploy != num || s.State != deploy.StateConverged || mark(h) != fmt.Sprintf("deploy %d on %s\n", k, h) {
					return false
				}
			}
			return true
		}
	}

	d1 := deployed(1)
	wait.Until(t, 60*time.Second, onDeploy(d1, 1, names...), func() string { return "all four on deploy 1:\n" + statusText() })
	t.Logf("four hosts on deploy %d %v after the first boot began", d1, time.Since(began).Round(time.Millisecond))

	d := hosts["d"]
	if _, err := d.Run(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	d2 := deployed(2)
	d3 := deployed(3)
	wait.Until(t, 20*time.Second, onDeploy(d3, 3, "a", "b", "c"), func() string { return "a, b, c on deploy 3 with d cut off:\n" + statusText() })
	wait.Until(t, deploy.StatusTTL+15*time.Second, func() bool {
		s := status()["d"]
		return s.State == deploy.StateLost && s.LastState == deploy.StateConverged && s.Deploy == d1
	}, func() string { return "d lost on deploy 1:\n" + statusText() })
	t.Logf("d cut off: shown lost %v after the cut; deploys %d and %d made meanwhile\n%s", time.Since(cutAt).Round(time.Millisecond), d2, d3, statusText())
	if m := mark("d"); m != "deploy 1 on d\n" {
		t.Errorf("d's mark while cut off: %q", m)
	}

	if _, err := d.Run(ctx, "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	wait.Until(t, 30*time.Second, onDeploy(d3, 3, names...), func() string { return "d caught up to deploy 3:\n" + statusText() })
	t.Logf("d caught up to deploy %d %v after the heal\n%s", d3, time.Since(healed).Round(time.Millisecond), statusText())
	if out := statusText(); strings.Contains(out, "lost") {
		t.Errorf("a host still lost after the heal:\n%s", out)
	}
	t.Logf("whole test %v", time.Since(began).Round(time.Millisecond))
}
