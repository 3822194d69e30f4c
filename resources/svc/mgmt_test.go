package svc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// e2eGraph is a service whose unit file and three config files mgmt
// writes, with a notify edge from each config file to the service. Each
// start of the service appends the config it starts with to
// /run/mgmt-test-starts.
func e2eGraph(version int) string {
	conf := func(n string) string {
		return fmt.Sprintf("  - name: %s\n    path: /etc/mgmt-test-e2e/%s.conf\n    content: \"%s=%d\\n\"\n", n, n, n, version)
	}
	edge := func(n string) string {
		return fmt.Sprintf("- name: %s-restarts\n  from: {kind: file, name: %s}\n  to: {kind: svc, name: mgmt-test-e2e}\n  notify: true\n", n, n)
	}
	return `graph: svc-e2e
resources:
  file:
  - name: unit
    path: /etc/systemd/system/mgmt-test-e2e.service
    content: |
      [Unit]
      Description=mgmt svc end-to-end test
      StartLimitIntervalSec=0
      [Service]
      ExecStartPre=/bin/sh -c 'echo $(cat /etc/mgmt-test-e2e/a.conf /etc/mgmt-test-e2e/b.conf /etc/mgmt-test-e2e/c.conf) >> /run/mgmt-test-starts'
      ExecStart=/bin/sleep infinity
      [Install]
      WantedBy=multi-user.target
  - name: confdir
    path: /etc/mgmt-test-e2e/
` + conf("a") + conf("b") + conf("c") + `  svc:
  - name: mgmt-test-e2e
    state: running
    startup: enabled
edges:
` + edge("a") + edge("b") + edge("c")
}

// The mgmt binary runs inside a host with e2eGraph: it writes the unit
// file (automatic edge: before the service) and the config, then starts
// and enables the service once, without restarting it for the config it
// already started with. A `systemctl stop` and a kill -9 of the main
// process are repaired. A new version of the graph changes all three
// config files at once: the service is restarted exactly once, after all
// three were written.
func TestMgmtInHost(t *testing.T) {
	testhost.Require(t)
	h := testhost.StartT(t, testhost.Options{})
	e := &host{t: t, h: h}
	mgmt := installMgmt(t, h)
	const name = "mgmt-test-e2e.service"
	if err := h.WriteFile("/root/graph.yaml", []byte(e2eGraph(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := e.ctx()
	p, err := h.Spawn(ctx, mgmt, "run", "--file", "/root/graph.yaml", "--client-urls", "http://127.0.0.1:12379", "--server-urls", "http://127.0.0.1:12380")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(5 * time.Second)
	starts := func() []string {
		b, err := h.ReadFile("/run/mgmt-test-starts")
		if err != nil {
			return nil
		}
		return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	}
	show := func(prop string) string { return e.systemctl("show", "-P", prop, name) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		wait.Until(t, 30*time.Second, cond, func() string {
			return fmt.Sprintf("%s: %s is %s, starts %q; mgmt's log:\n%s", what, name, e.state(name), starts(), p.Output())
		})
	}
	// convergedAfter: the graph converged after the last log line holding mark.
	convergedAfter := func(mark string) func() bool {
		return func() bool {
			out := p.Output()
			i := strings.LastIndex(out, mark)
			return i >= 0 && strings.Contains(out[i:], "graph converged")
		}
	}

	wait("first run", convergedAfter("msg=started"))
	if got := e.state(name); got != "active enabled" {
		t.Fatalf("%s is %q, want active enabled", name, got)
	}
	if s := starts(); len(s) != 1 || s[0] != "a=1 b=1 c=1" {
		t.Errorf("starts %q, want one, with a=1 b=1 c=1: the refresh restarted the service it had just started", s)
	}

	for i, drift := range []string{"systemctl stop " + name, "kill -9 $(systemctl show -P MainPID " + name + ")"} {
		inv := show("InvocationID")
		t0 := time.Now()
		e.run("sh", "-c", drift)
		wait(drift, func() bool { return show("ActiveState") == "active" && show("InvocationID") != inv })
		t.Logf("%s: running again after %v", drift, time.Since(t0).Round(time.Millisecond))
		if n := len(starts()); n != 2+i {
			t.Errorf("after %s: %d starts, want %d", drift, n, 2+i)
		}
	}

	// All three config files change at once: one restart, with all three.
	if err := h.WriteFile("/root/graph.yaml.new", []byte(e2eGraph(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.run("mv", "/root/graph.yaml.new", "/root/graph.yaml")
	wait("config change", convergedAfter("msg=restarted"))
	s := starts()
	if len(s) != 4 || s[3] != "a=2 b=2 c=2" {
		t.Errorf("starts %q: want 4, the last with a=2 b=2 c=2 (one restart, after all three files changed)", s)
	}
	if n := strings.Count(p.Output(), "msg=restarted"); n != 1 {
		t.Errorf("%d refreshes logged, want 1", n)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("mgmt on SIGTERM: %v\n%s", err, p.Output())
	}
	if testing.Verbose() {
		t.Logf("mgmt's log:\n%s", p.Output())
	}
}
