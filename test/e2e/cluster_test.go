package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/test/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostGraph is the seed's exported-resource demo for one host: four files,
// two of them exported, and every other host's exported files collected
// into this host's directory.
func hostGraph(dir, h string) string {
	file := func(n int, exported bool) string {
		name := fmt.Sprintf("file%d%s", n, h)
		if exported {
			name = "@@" + name
		}
		return fmt.Sprintf("  - name: %q\n    path: %s/f%d%s\n    content: \"i am f%d from %s\\n\"\n", name, dir, n, h, n, h)
	}
	return "resources:\n  file:\n" + file(1, false) + file(2, false) + file(3, true) + file(4, true) +
		fmt.Sprintf("collect:\n- kind: file\n  pattern: %s/\n", dir)
}

func listDir(dir string) string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// TestExportedResourcesThreeHosts runs the demo as users do: the one file
// examples/graph3.yaml, unchanged, on hosts a, b and c (--label dir puts
// their directories under the test's). Each names and places its exports
// through templates. The three agents start back to back, as a user
// starting them together would. A joining agent exchanges through the seed
// while its etcd member joins in the background (etcd takes one new member
// at a time, none within 5 s of the previous change; the exchange used to
// wait for that: 5.4 s), so every host holds every export within about a
// second, and all three are voting members a few seconds later.
func TestExportedResourcesThreeHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three agents with etcd")
	}
	base := t.TempDir()
	g, err := filepath.Abs(filepath.Join("..", "..", "examples", "graph3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"a", "b", "c"}
	var seed string
	began := time.Now()
	for i, h := range hosts {
		dir := filepath.Join(base, "mgmt"+strings.ToUpper(h))
		os.MkdirAll(dir, 0o755)
		cu := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		su := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		args := []string{"run", "--file", g, "--no-watch", "--hostname", h, "--label", "dir=" + base, "--prefix", filepath.Join(base, "prefix-"+h),
			"--client-urls", cu, "--server-urls", su}
		if i == 0 {
			seed = cu
		} else {
			args = append(args, "--seeds", seed)
		}
		start(t, args...)
	}
	want := map[string]string{
		"a": "f1a f2a f3a f3b f3c f4a f4b f4c",
		"b": "f1b f2b f3a f3b f3c f4a f4b f4c",
		"c": "f1c f2c f3a f3b f3c f4a f4b f4c",
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, h := range hosts {
		dir := filepath.Join(base, "mgmt"+strings.ToUpper(h))
		wait.Until(t, time.Until(deadline), func() bool { return listDir(dir) == want[h] },
			func() string { return fmt.Sprintf("host %s holds %q, want %q", h, listDir(dir), want[h]) })
	}
	took := time.Since(began)
	t.Logf("started back to back, all three hosts hold all exports %v after the first started", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the exchange took %v, want well under the 5 s etcd waits between two new members", took)
	}
	if got := readFile(filepath.Join(base, "mgmtA", "f3b")); got != "i am f3, exported from host b\n" {
		t.Fatalf("collected f3b holds %q", got)
	}
	if got := readFile(filepath.Join(base, "mgmtC", "f1c")); got != "i am f1 of host c\n" {
		t.Fatalf("f1c holds %q", got)
	}
	waitVoters(t, seed, 40*time.Second, hosts...)
	t.Logf("all three are voting etcd members %v after the first started", time.Since(began).Round(time.Millisecond))
}

// waitVoters waits until the cluster at endpoint has exactly the members
// names, all started and voting.
func waitVoters(t *testing.T, endpoint string, d time.Duration, names ...string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		resp, err := cli.MemberList(ctx)
		cancel()
		var got []string
		if err == nil {
			for _, m := range resp.Members {
				n := m.Name
				if n == "" {
					n = "(unstarted)"
				}
				if m.IsLearner {
					n += "(learner)"
				}
				got = append(got, n)
			}
			sort.Strings(got)
			if slices.Equal(got, names) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd members %v (err %v), want voting members %v", got, err, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestValidateForHost: validate --hostname --label prints the graph as that
// host sees it (resources kept and left out, edges dropped); without a
// host it checks every template against every fact name; a template error
// names the file, line and column of the template.
func TestValidateForHost(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, `resources:
  noop:
  - name: "hello-{{ .Hostname }}"
  - name: web
    meta: {hosts: ["web-*"]}
  - name: db
    meta: {labels: {role: db}}
edges:
- {name: e1, from: {kind: noop, name: "hello-{{ .Hostname }}"}, to: {kind: noop, name: db}}
`)
	out, err := exec.Command(bin, "validate", "--file", g, "--hostname", "web-1", "--label", "role=web").CombinedOutput()
	want := g + `: valid for host web-1: 2 resources, 0 edges
resource noop[hello-web-1] (` + g + `:3:5)
resource noop[web] (` + g + `:4:5)
left out noop[db] (` + g + `:6:5): meta labels want role=db; host web-1 has role=web
dropped edge "e1" noop[hello-{{ .Hostname }}] -> noop[db] (` + g + `:9:3): to noop[db], which is not on this host
`
	if err != nil || string(out) != want {
		t.Errorf("validate --hostname web-1: %v:\n%s\nwant\n%s", err, out, want)
	}
	out, err = exec.Command(bin, "validate", "--file", g).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), g+": valid: 3 resources, 1 edges\n") {
		t.Errorf("validate: %v: %s", err, out)
	}
	bad := writeGraph(t, dir, "resources:\n  noop:\n  - name: \"n-{{ .Facts.os.idd }}\"\n")
	out, err = exec.Command(bin, "validate", "--file", bad).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), bad+`:3:17: noop[n-{{ .Facts.os.idd }}]: template: .Facts.os.idd: map has no entry for key "idd"`) {
		t.Errorf("validate a bad template: exit %d: %s", code, out)
	}
}

// A busy port and an unreachable seed are clear errors, not hangs.
func TestClusterStartErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	dir := t.TempDir()
	g := filepath.Join(dir, "g.yaml")
	os.WriteFile(g, []byte(hostGraph(dir, "a")), 0o644)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := "http://" + l.Addr().String()
	a := start(t, "run", "--file", g, "--hostname", "a", "--prefix", filepath.Join(dir, "p1"), "--client-urls", busy,
		"--server-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	if code := a.wait(t, 20*time.Second); code == 0 || !strings.Contains(a.out.String(), "address already in use") {
		t.Fatalf("busy port: exit %d:\n%s", code, a.out.String())
	}

	unreachable := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	b := start(t, "run", "--file", g, "--hostname", "b", "--prefix", filepath.Join(dir, "p2"), "--no-server", "--seeds", unreachable)
	if code := b.wait(t, 20*time.Second); code == 0 || !strings.Contains(b.out.String(), "unreachable") {
		t.Fatalf("unreachable seed: exit %d:\n%s", code, b.out.String())
	}
}

// An agent killed with SIGKILL and started again rejoins and converges;
// the other keeps running meanwhile and sees its new exports.
func TestAgentKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two agents with etcd")
	}
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "mgmtA"), filepath.Join(base, "mgmtB")
	ga, gb := filepath.Join(base, "a.yaml"), filepath.Join(base, "b.yaml")
	os.WriteFile(ga, []byte(hostGraph(dirA, "a")), 0o644)
	os.WriteFile(gb, []byte(hostGraph(dirB, "b")), 0o644)
	seed := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	start(t, "run", "--file", ga, "--hostname", "a", "--prefix", filepath.Join(base, "pa"),
		"--client-urls", seed, "--server-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	wait.For(t, 10*time.Second, "host a up", func() bool { return listDir(dirA) == "f1a f2a f3a f4a" })
	bArgs := []string{"run", "--file", gb, "--hostname", "b", "--prefix", filepath.Join(base, "pb"), "--seeds", seed,
		"--client-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "--server-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	b := start(t, bArgs...)
	wait.For(t, 10*time.Second, "b's exports at a", func() bool { return listDir(dirA) == "f1a f2a f3a f3b f4a f4b" })
	// b's member joins after the exchange began. Once it has, a alone is
	// no quorum: the restarted b must start its member again before it can
	// exchange anything.
	waitVoters(t, seed, 30*time.Second, "a", "b")
	b.cmd.Process.Kill()
	b.wait(t, 10*time.Second)

	// While b is down, its graph changes: f5b is exported too.
	os.WriteFile(gb, []byte(strings.Replace(hostGraph(dirB, "b"), "collect:",
		fmt.Sprintf("  - name: \"@@file5b\"\n    path: %s/f5b\n    content: \"five\\n\"\ncollect:", dirB), 1)), 0o644)
	os.Remove(filepath.Join(dirB, "f1b"))
	start(t, bArgs...)
	wait.For(t, 10*time.Second, "b converged again", func() bool { return listDir(dirB) == "f1b f2b f3a f3b f4a f4b f5b" })
	wait.For(t, 10*time.Second, "b's new export at a", func() bool { return listDir(dirA) == "f1a f2a f3a f3b f4a f4b f5b" })
}

// Agents as clients only (--no-server) of a three-member cluster of
// Debian's etcd 3.4 server: the demo works against the older server too.
func TestClientOnlyAgentsOnEtcd34(t *testing.T) {
	bin := os.Getenv("MGMT_TEST_ETCD_BINARY")
	if bin == "" {
		skip.OrFail(t, "set MGMT_TEST_ETCD_BINARY to an etcd server binary (make test unpacks Debian's 3.4)")
	}
	base := t.TempDir()
	var initial, eps []string
	peers := make([]string, 3)
	for i := range 3 {
		peers[i] = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		eps = append(eps, fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		initial = append(initial, fmt.Sprintf("x%d=%s", i, peers[i]))
	}
	for i := range 3 {
		cmd := exec.Command(bin, "--name", fmt.Sprintf("x%d", i), "--data-dir", filepath.Join(base, fmt.Sprintf("etcd%d", i)),
			"--listen-client-urls", eps[i], "--advertise-client-urls", eps[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--log-level", "error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	seeds := strings.Join(eps, ",")
	want := map[string]string{}
	for _, h := range []string{"a", "b", "c"} {
		dir := filepath.Join(base, "mgmt"+strings.ToUpper(h))
		g := filepath.Join(base, h+".yaml")
		os.WriteFile(g, []byte(hostGraph(dir, h)), 0o644)
		start(t, "run", "--file", g, "--hostname", h, "--prefix", filepath.Join(base, "p"+h), "--no-server", "--seeds", seeds)
		want[dir] = fmt.Sprintf("f1%[1]s f2%[1]s f3a f3b f3c f4a f4b f4c", h)
	}
	for dir, w := range want {
		wait.For(t, 10*time.Second, dir+" complete", func() bool { return listDir(dir) == w })
	}
}
