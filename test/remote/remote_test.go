// Package remote tests `mgmt run --remote` against Debian's real sshd in
// test hosts on a bridge (see helpers_test.go for the setup).
package remote

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

type report struct {
	Host    string `json:"host"`
	Result  string `json:"result"`
	Changed int    `json:"changed"`
}

func readReport(t testing.TB, file string) report {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("report %s: %v", file, err)
	}
	return r
}

// TestRemoteKeyLoginNoopSudo: a root login and a non-root one with
// --remote-sudo. --noop first changes nothing on either and reports what it
// would (--detailed-exitcodes: 4); the real run then creates the file (as root, through sudo), the
// reports come back as FILE.HOST with each host's own name, the log lines
// are prefixed with the host, and nothing is left in /tmp or a cache; a
// check run then exits 0 with --detailed-exitcodes.
func TestRemoteKeyLoginNoopSudo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a, b := e.startHost("ra"), e.startHost("rb")
	e.trust(a, b)
	const target = "/etc/mgmt-remote-test"
	graph := e.writeGraph(fileGraph(target, "managed by {{ .Hostname }}\n"), nil)
	rep := filepath.Join(t.TempDir(), "report.json")

	// Two controllers: root on a, deploy with sudo on b.
	for _, c := range []struct {
		h    *sshHost
		args []string
	}{
		{a, []string{"--remote", a.target("root")}},
		{b, []string{"--remote", b.target("deploy"), "--remote-sudo"}},
	} {
		out, code := e.run(graph, append(c.args, "--noop", "--detailed-exitcodes", "--report", rep)...)
		if code != 4 {
			t.Fatalf("--noop --detailed-exitcodes on %s: exit %d, want 4 (would change)", c.h.name(), code)
		}
		mustContain(t, out, "ok in", "(would change something)")
		if _, err := os.Stat(filepath.Join(c.h.h.Root(), target)); !os.IsNotExist(err) {
			t.Errorf("--noop created %s on %s: %v", target, c.h.name(), err)
		}
		r := readReport(t, rep+"."+c.h.h.Addr())
		if r.Host != c.h.name() || r.Result != "ok" || r.Changed != 0 {
			t.Errorf("--noop report of %s: %+v, want host %s, ok, nothing changed", c.h.name(), r, c.h.name())
		}
		// The remote log, each line prefixed with the host.
		mustContain(t, out, "\n"+c.h.h.Addr()+": time=", `msg="would change" res=file[f] property=state from=absent to=file`, "remote "+c.h.h.Addr()+": ok")
		c.h.noLeftovers(t)

		out, code = e.run(graph, append(c.args, "--report", rep)...)
		if code != 0 {
			t.Fatalf("run on %s: exit %d", c.h.name(), code)
		}
		got, err := os.ReadFile(filepath.Join(c.h.h.Root(), target))
		if err != nil || string(got) != "managed by "+c.h.name()+"\n" {
			t.Errorf("%s on %s: %q, %v", target, c.h.name(), got, err)
		}
		st, err := os.Stat(filepath.Join(c.h.h.Root(), target))
		if err == nil && st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s on %s is not root's: the run did not run as root", target, c.h.name())
		}
		if r := readReport(t, rep+"."+c.h.h.Addr()); r.Result != "ok" || r.Changed != 1 {
			t.Errorf("report of %s: %+v", c.h.name(), r)
		}
		mustContain(t, out, "remote: 1 hosts, 1 ok, 0 failed")
		c.h.noLeftovers(t)
		// Nothing left to do: --detailed-exitcodes says 0.
		if _, code := e.run(graph, append(c.args, "--detailed-exitcodes")...); code != 0 {
			t.Errorf("check run on %s: exit %d, want 0", c.h.name(), code)
		}
	}
}

// TestRemoteHostKeys: a host not in known_hosts is refused, and nothing
// is copied there; --remote-accept-new adds it and runs; a host whose key
// then changes is refused, --remote-accept-new or not, and known_hosts is
// left as it was.
func TestRemoteHostKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a := e.startHost("ka")
	if err := os.WriteFile(e.knownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	graph := e.writeGraph(fileGraph("/tmp/hostkey-test", "x\n"), nil)
	out, code := e.run(graph, "--remote", a.target("root"))
	if code != 1 {
		t.Errorf("unknown host key: exit %d, want 1", code)
	}
	mustContain(t, out, "remote "+a.h.Addr()+": FAILED: "+a.h.Addr()+": refused host key", "not in known_hosts")
	a.noLeftovers(t)

	out, code = e.run(graph, "--remote", a.target("root"), "--remote-accept-new")
	if code != 0 {
		t.Fatalf("--remote-accept-new: exit %d", code)
	}
	kh, _ := os.ReadFile(e.knownHosts)
	if !strings.Contains(string(kh), a.h.Addr()+" ssh-ed25519 ") {
		t.Errorf("known_hosts after --remote-accept-new: %q", kh)
	}
	a.noLeftovers(t)

	a.newHostKey()
	a.restartSSHD()
	for _, extra := range [][]string{nil, {"--remote-accept-new"}} {
		out, code = e.run(graph, append([]string{"--remote", a.target("root")}, extra...)...)
		if code != 1 {
			t.Errorf("changed host key %v: exit %d, want 1", extra, code)
		}
		mustContain(t, out, "refused host key", "HOST KEY CHANGED")
	}
	if kh2, _ := os.ReadFile(e.knownHosts); string(kh2) != string(kh) {
		t.Errorf("known_hosts changed after a refused key:\n%s", kh2)
	}
	a.noLeftovers(t)
}

// TestRemoteExportsBetweenThree runs examples/graph3.yaml on three hosts
// from one controller: each reaches the controller's embedded etcd through
// a unix socket forwarded over its own SSH connection, so each ends with
// the exported files of the other two. The logins are a user's, the runs
// root's (--remote-sudo). No TCP port is opened on the hosts.
func TestRemoteExportsBetweenThree(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	var hosts []*sshHost
	var args []string
	for _, n := range []string{"a", "b", "c"} {
		h := e.startHost(n)
		if err := h.h.MkdirAll("/tmp/mgmt"+strings.ToUpper(n), 0o755); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
		args = append(args, "--remote", h.target("deploy"))
	}
	// Through sudo: root's run uses the socket sshd made for deploy.
	args = append(args, "--remote-sudo")
	e.trust(hosts...)
	g, err := os.ReadFile(filepath.Join("..", "..", "examples", "graph3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	graph := e.writeGraph(string(g), nil)
	out, code := e.run(graph, append(args, "--converged-timeout", "8")...)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, out, "remote: 3 hosts, 3 ok, 0 failed")
	for _, h := range hosts {
		dir := filepath.Join(h.h.Root(), "/tmp/mgmt"+strings.ToUpper(h.name()))
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		want := []string{"f1" + h.name(), "f2" + h.name()}
		for _, o := range hosts {
			want = append(want, "f3"+o.name(), "f4"+o.name())
		}
		for _, w := range want {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+w+" ") {
				t.Errorf("host %s: %s lacks %s: has %v", h.name(), dir, w, names)
			}
		}
		h.onlySSHListens(t)
		h.noLeftovers(t)
	}
}

// TestRemoteLinkCutDuringCopy: the link of one of two hosts goes down
// while its copy is under way (a 30 MiB bundle on top of the binary). That
// host fails as "copy cut off" within the keepalive's bound, the other
// completes, the exit status is 1, and the summary names the directory
// left on the unreachable host.
func TestRemoteLinkCutDuringCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a, b := e.startHost("ca"), e.startHost("cb")
	e.trust(a, b)
	big := make([]byte, 30<<20)
	rand.Read(big)
	graph := e.writeGraph(`graph: big
resources:
  file:
  - name: big
    path: /tmp/big-copy
    source: big.bin
`, map[string][]byte{"big.bin": big})
	c := e.cmd(e.ctx, graph, "--remote", a.target("root"), "--remote", b.target("root"))
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Cut b once a partial file is in its private directory.
	wait.For(t, 60*time.Second, "a partial copy on cb", func() bool {
		for _, l := range b.leftovers() {
			ents, _ := os.ReadDir(filepath.Join(b.h.Root(), l))
			for _, d := range ents {
				if strings.HasSuffix(d.Name(), ".part") {
					return true
				}
			}
		}
		return false
	})
	got := e.cutLink(t, b, c, &out, 30*time.Second)
	mustContain(t, got, "remote "+b.h.Addr()+": FAILED: "+b.h.Addr()+": copy cut off", "could not be removed",
		"remote "+a.h.Addr()+": ok", "remote: 2 hosts, 1 ok, 1 failed")
	if got, err := os.ReadFile(filepath.Join(a.h.Root(), "/tmp/big-copy")); err != nil || len(got) != len(big) {
		t.Errorf("ca's copy: %d bytes, %v", len(got), err)
	}
	a.noLeftovers(t)
}

// TestRemoteHostKilledAndInterrupted: of three hosts running a graph that
// takes a while, one is killed outright during its run (it fails as "run
// failed", the others go on); then the controller is stopped with SIGINT
// during a run: the remote processes end, the private directories are
// removed, and the status is 1.
func TestRemoteHostKilledAndInterrupted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a, b, k := e.startHost("ia"), e.startHost("ib"), e.startHost("ik")
	e.trust(a, b, k)
	graph := e.writeGraph(`graph: slow
resources:
  exec:
  - name: slow
    cmd: sleep 6
`, nil)
	args := []string{"--remote", a.target("root"), "--remote", b.target("root"), "--remote", k.target("deploy"), "--remote-sudo", "--converged-timeout", "1"}
	c := e.cmd(e.ctx, graph, args...)
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 60*time.Second, "the run on ik", func() bool { return k.remoteProcs() != "" })
	killed := time.Now()
	if err := k.h.Stop(); err != nil {
		t.Logf("stopping ik: %v", err)
	}
	c.Wait()
	t.Logf("controller after ik was killed (%v):\n%s", time.Since(killed), out.String())
	if c.ProcessState.ExitCode() != 1 {
		t.Errorf("exit %d, want 1", c.ProcessState.ExitCode())
	}
	mustContain(t, out.String(), "remote "+k.h.Addr()+": FAILED: "+k.h.Addr()+": run failed",
		"remote "+a.h.Addr()+": ok", "remote "+b.h.Addr()+": ok")
	a.noLeftovers(t)
	b.noLeftovers(t)

	// Ctrl-C of the controller during the runs.
	c = e.cmd(e.ctx, graph, "--remote", a.target("root"), "--remote", b.target("deploy"), "--remote-sudo")
	out.Reset()
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 60*time.Second, "the runs on ia and ib", func() bool { return a.remoteProcs() != "" && b.remoteProcs() != "" })
	c.Process.Signal(syscall.SIGINT)
	c.Wait()
	t.Logf("controller after SIGINT:\n%s", out.String())
	if c.ProcessState.ExitCode() != 1 {
		t.Errorf("after SIGINT: exit %d, want 1", c.ProcessState.ExitCode())
	}
	for _, h := range []*sshHost{a, b} {
		if p := h.remoteProcs(); p != "" {
			t.Errorf("host %s still runs after the controller stopped: %s", h.name(), p)
		}
		h.noLeftovers(t)
	}
	mustContain(t, out.String(), "run failed: stopped by the controller")

	// The controller killed outright: the sessions drop and the remote
	// runs end with them (their directories stay: no one is left to
	// remove them).
	c = e.cmd(e.ctx, graph, "--remote", a.target("root"), "--remote", b.target("deploy"), "--remote-sudo", "--converged-timeout", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 60*time.Second, "the runs on ia and ib", func() bool { return a.remoteProcs() != "" && b.remoteProcs() != "" })
	c.Process.Kill()
	c.Wait()
	for _, h := range []*sshHost{a, b} {
		wait.Until(t, 20*time.Second, func() bool { return h.remoteProcs() == "" },
			func() string { return "the run on " + h.name() + " outlived its session: " + h.remoteProcs() })
	}
}

// TestRemoteKeepAndInvalid: --remote-keep leaves the private directory
// and puts the binary in the login's cache; the next run finds it there by
// its sha256 and does not copy it, and removes only what it copied. An
// invalid graph exits 2 before any connection is made.
func TestRemoteKeepAndInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a := e.startHost("pa")
	e.trust(a)
	bad := e.writeGraph("graph: bad\nresources:\n  file:\n  - name: f\n    path: relative/not/allowed\n", nil)
	out, code := e.run(bad, "--remote", a.target("root"))
	if code != 2 {
		t.Errorf("invalid graph: exit %d, want 2", code)
	}
	mustContain(t, out, "graph.yaml:")
	if strings.Contains(a.sshd.Output(), "Accepted publickey") || strings.Contains(out, "remote: ") {
		t.Errorf("an invalid graph connected:\n%s", a.sshd.Output())
	}
	a.noLeftovers(t)

	graph := e.writeGraph(fileGraph("/tmp/keep-test", "kept\n"), nil)
	out, code = e.run(graph, "--remote", a.target("deploy"), "--remote-keep")
	if code != 0 {
		t.Fatalf("--remote-keep: exit %d", code)
	}
	left := a.leftovers()
	var cached, private int
	for _, l := range left {
		switch {
		case strings.HasPrefix(l, "/home/deploy/.cache/mgmt-remote/mgmt-"):
			cached++
		case strings.HasPrefix(l, "/tmp/mgmt-remote-"):
			private++
		}
	}
	if cached != 1 || private != 1 || len(left) != 2 {
		t.Fatalf("after --remote-keep: %v, want the cached binary and one private directory", left)
	}
	out, code = e.run(graph, "--remote", a.target("deploy"))
	if code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
	mustContain(t, out, "ok in", "(binary already there)")
	if got := a.leftovers(); !slices.Equal(got, left) {
		t.Errorf("the second run left %v, want what the first kept: %v", got, left)
	}
	// The cache is checked by hash: a changed binary there is not run.
	for _, l := range left {
		if strings.Contains(l, ".cache") {
			if err := os.WriteFile(filepath.Join(a.h.Root(), l), []byte("#!/bin/sh\nexit 0\n"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, code = e.run(graph, "--remote", a.target("deploy"))
	if code != 0 || strings.Contains(out, "(binary already there)") {
		t.Errorf("a tampered cached binary was used (exit %d)", code)
	}
}
