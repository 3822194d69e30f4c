package remote

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// benchHosts is how many fresh hosts each tool gets.
const benchHosts = 10

const benchGraph = `graph: bench
resources:
  file:
  - name: bench1
    path: /etc/bench-1
    content: "managed 1\n"
  - name: bench2
    path: /etc/bench-2
    content: "managed 2\n"
  - name: bench3
    path: /etc/bench-3
    content: "managed 3\n"
  pkg:
  - name: mgmt-test-svc
    allowunsupported: true # the local repository's packages are unsigned
  svc:
  - name: mgmt-test-svc
    state: running
    startup: enabled
edges:
# PackageKit lists no files of a package not yet installed from a local
# flat repository, so the automatic edge is not found: say it.
- from: {kind: pkg, name: mgmt-test-svc}
  to: {kind: svc, name: mgmt-test-svc}
`

const benchPlaybook = `- hosts: all
  tasks:
  - copy:
      dest: "/etc/bench-{{ item }}"
      content: "managed {{ item }}\n"
      mode: "0644"
    loop: [1, 2, 3]
  - apt:
      name: mgmt-test-svc
      state: present
  - systemd:
      name: mgmt-test-svc
      state: started
      enabled: true
`

// BenchmarkRemoteVsAnsible applies the same state (three files, a package
// from the local repository, its service running and enabled) to 10 fresh
// test hosts over SSH, with `mgmt run --remote` (one-shot,
// --converged-timeout 0) and with `ansible-playbook` (its defaults: facts
// gathered, ControlPersist, no pipelining; 10 forks), each on its own 10
// hosts: the first run (everything to do) and a check run (nothing to do).
// Reported: first-s and check-s for each.
func BenchmarkRemoteVsAnsible(b *testing.B) {
	if testing.Short() {
		b.Skip("boots 20 test hosts")
	}
	testhost.RequireTools(b, "ansible-playbook", "ssh")
	repo := testrepo.BuildT(b)
	var mFirst, mCheck, mCached, aFirst, aCheck time.Duration
	// The timer runs only around the tools' runs (not the hosts' boots).
	b.StopTimer()
	for range b.N {
		f, c, cached := benchMgmt(b, repo)
		mFirst, mCheck, mCached = mFirst+f, mCheck+c, mCached+cached
		f, c = benchAnsible(b, repo)
		aFirst, aCheck = aFirst+f, aCheck+c
	}
	n := float64(b.N)
	b.ReportMetric(mFirst.Seconds()/n, "mgmt-first-s")
	b.ReportMetric(mCheck.Seconds()/n, "mgmt-check-s")
	b.ReportMetric(mCached.Seconds()/n, "mgmt-check-cached-s")
	b.ReportMetric(aFirst.Seconds()/n, "ansible-first-s")
	b.ReportMetric(aCheck.Seconds()/n, "ansible-check-s")
}

func benchEnv(b *testing.B, repo *testrepo.Repo, prefix string) (*env, []*sshHost) {
	e := newEnv(b, 10*time.Minute)
	var hosts []*sshHost
	for i := range benchHosts {
		hosts = append(hosts, e.startHostWith(testhost.Options{Name: fmt.Sprintf("%s%d", prefix, i), AptRepo: repo.Dir}))
	}
	e.trust(hosts...)
	return e, hosts
}

// checkApplied fails the benchmark unless every host has the state.
func checkApplied(b *testing.B, e *env, hosts []*sshHost) {
	for _, h := range hosts {
		for i := 1; i <= 3; i++ {
			got, err := os.ReadFile(filepath.Join(h.h.Root(), fmt.Sprintf("/etc/bench-%d", i)))
			if err != nil || string(got) != fmt.Sprintf("managed %d\n", i) {
				b.Fatalf("%s: /etc/bench-%d: %q, %v", h.name(), i, got, err)
			}
		}
		out, err := h.h.Run(e.ctx, "systemctl", "is-active", testrepo.SvcUnit)
		if err != nil {
			b.Fatalf("%s: %s not active: %s %v", h.name(), testrepo.SvcUnit, out, err)
		}
	}
}

// benchMgmt: the first run, a check run, and a check run that finds the
// binary in the hosts' cache (a --remote-keep run before it put it there).
func benchMgmt(b *testing.B, repo *testrepo.Repo) (first, check, cached time.Duration) {
	e, hosts := benchEnv(b, repo, "m")
	graph := e.writeGraph(benchGraph, nil)
	rep := filepath.Join(b.TempDir(), "report.json")
	var args []string
	for _, h := range hosts {
		args = append(args, "--remote", h.target("root"))
	}
	args = append(args, "--remote-parallel", fmt.Sprint(benchHosts), "--converged-timeout", "0", "--report", rep)
	var keep time.Duration
	for i, d := range []*time.Duration{&first, &check, &keep, &cached} {
		a := args
		if d == &keep {
			a = append(a, "--remote-keep")
		}
		b.StartTimer()
		t0 := time.Now()
		out, code := e.run(graph, a...)
		*d = time.Since(t0)
		b.StopTimer()
		if code != 0 {
			b.Fatalf("mgmt run %d: exit %d", i+1, code)
		}
		if d == &cached && strings.Count(out, "(binary already there)") != benchHosts {
			b.Fatalf("mgmt run %d: the binary was copied again:\n%s", i+1, out)
		}
		for _, h := range hosts {
			r := readReport(b, rep+"."+h.h.Addr())
			if want := []int{5, 0, 0, 0}[i]; r.Changed != want {
				b.Fatalf("mgmt run %d on %s: %d changed, want %d\n%s", i+1, h.name(), r.Changed, want, out)
			}
		}
	}
	checkApplied(b, e, hosts)
	return first, check, cached
}

func benchAnsible(b *testing.B, repo *testrepo.Repo) (first, check time.Duration) {
	e, hosts := benchEnv(b, repo, "a")
	dir := b.TempDir()
	var inv strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&inv, "%s ansible_user=root\n", h.h.Addr())
	}
	invFile, play := filepath.Join(dir, "inventory"), filepath.Join(dir, "play.yml")
	os.WriteFile(invFile, []byte(inv.String()), 0o644)
	os.WriteFile(play, []byte(benchPlaybook), 0o644)
	for i, d := range []*time.Duration{&first, &check} {
		c := exec.CommandContext(e.ctx, "ip", "netns", "exec", e.ns, "ansible-playbook", "-i", invFile, "-f", fmt.Sprint(benchHosts), play)
		c.Env = []string{
			"HOME=" + e.home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "ANSIBLE_NOCOLOR=1",
			"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
			"ANSIBLE_PRIVATE_KEY_FILE=" + e.key,
			"ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=" + e.knownHosts + " -o StrictHostKeyChecking=yes",
		}
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		b.StartTimer()
		t0 := time.Now()
		err := c.Run()
		*d = time.Since(t0)
		b.StopTimer()
		if err != nil {
			b.Fatalf("ansible-playbook run %d: %v\n%s", i+1, err, out.String())
		}
		// PLAY RECAP: every host ok, changed=3 (tasks) then changed=0.
		want := []string{"changed=3", "changed=0"}[i] // the copy loop is one task
		if got := strings.Count(out.String(), want+" "); got != benchHosts {
			b.Fatalf("ansible-playbook run %d: %d hosts with %s, want %d\n%s", i+1, got, want, benchHosts, out.String())
		}
	}
	checkApplied(b, e, hosts)
	return first, check
}
