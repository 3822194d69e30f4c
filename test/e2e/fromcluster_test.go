package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// fleetGraph is the graph every host of TestFleetFromCluster runs: per
// host through templates; extra is added to it.
func fleetGraph(out, extra string) string {
	return fmt.Sprintf(`resources:
  file:
  - name: dir
    path: %[1]s/{{ .Hostname }}/
  - name: motd
    path: %[1]s/{{ .Hostname }}/motd
    source: files/motd
  - name: role
    path: %[1]s/{{ .Hostname }}/role
    content: "{{ .Labels.role }} on {{ .Hostname }}\n"
%[2]s  exec:
  - name: once
    cmd: /bin/sh -c "echo ran >> %[1]s/{{ .Hostname }}/exec-runs"
    creates: %[1]s/never
edges:
- from: {kind: file, name: dir}
  to: {kind: exec, name: once}
`, out, extra)
}

// fleetStatus runs `mgmt status --json` and returns the records by host.
func fleetStatus(t *testing.T, seed string) map[string]deploy.HostStatus {
	t.Helper()
	out, errOut, code := mgmt(t, "", "status", "--json", "--seeds", seed)
	if code != 0 {
		t.Fatalf("mgmt status: exit %d: %s", code, errOut)
	}
	var all []deploy.HostStatus
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("mgmt status --json: %v\n%s", err, out)
	}
	m := map[string]deploy.HostStatus{}
	for _, s := range all {
		m[s.Host] = s
	}
	return m
}

func inode(t *testing.T, p string) (uint64, time.Time) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()
}

// TestFleetFromCluster: five client-only agents run --from-cluster
// against one embedded etcd member. Deploys reach them all; a second one
// swaps in leaving unchanged resources untouched; templates render per
// host; a deploy that cannot render on one host leaves that host on the
// old one (state invalid) while the others move; a killed host shows as
// lost; an agent restarted with the cluster gone runs its cached deploy.
func TestFleetFromCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and five agents")
	}
	base := t.TempDir()
	out := filepath.Join(base, "out")
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	srv, err := etcd.StartServer(context.Background(), etcd.ServerConfig{
		Name: "fleet", DataDir: filepath.Join(base, "etcd"),
		ClientURLs: []string{"http://" + addrs[0]}, PeerURLs: []string{"http://" + addrs[1]},
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Stop()
		}
	})
	seed := srv.Endpoints()[0]

	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	args := map[string][]string{}
	agents := map[string]*agent{}
	for i, h := range hosts {
		role := "web"
		if h == "h1" {
			role = "db"
		}
		a := []string{"run", "--from-cluster", "--hostname", h, "--prefix", filepath.Join(base, "p-"+h),
			"--seeds", seed, "--no-server", "--label", "role=" + role}
		if h != "h5" { // h5 has no zone: deploy 3 cannot render there
			a = append(a, "--label", fmt.Sprintf("zone=z%d", i%2))
		}
		args[h] = a
		agents[h] = start(t, a...)
	}
	wait.For(t, 20*time.Second, "five hosts in mgmt status", func() bool { return len(fleetStatus(t, seed)) == 5 })

	src := filepath.Join(base, "src")
	writeTree(t, src, map[string]string{"graph.yaml": fleetGraph(out, ""), "files/motd": "motd one\n"})
	deployed := func(msg string) int64 {
		t.Helper()
		stdout, stderr, code := mgmt(t, src, "deploy", "--file", "graph.yaml", "--seeds", seed, "-m", msg)
		if code != 0 {
			t.Fatalf("mgmt deploy: exit %d: %s", code, stderr)
		}
		var n int64
		fmt.Sscan(stdout, &n)
		return n
	}
	onDeploy := func(n int64, hs ...string) func() bool {
		return func() bool {
			st := fleetStatus(t, seed)
			for _, h := range hs {
				if s := st[h]; s.Deploy != n || s.State != deploy.StateConverged {
					return false
				}
			}
			return true
		}
	}
	statusText := func() string {
		o, _, _ := mgmt(t, "", "status", "--seeds", seed)
		return o
	}

	// One deploy reaches all; templates render per host.
	d1 := deployed("first")
	wait.Until(t, 20*time.Second, onDeploy(d1, hosts...), func() string { return "all on deploy 1:\n" + statusText() })
	for _, h := range hosts {
		role := "web"
		if h == "h1" {
			role = "db"
		}
		if got, want := readFile(filepath.Join(out, h, "role")), role+" on "+h+"\n"; got != want {
			t.Errorf("%s: role file %q, want %q", h, got, want)
		}
		if got := readFile(filepath.Join(out, h, "motd")); got != "motd one\n" {
			t.Errorf("%s: motd %q", h, got)
		}
	}
	roleIno, roleMtime := inode(t, filepath.Join(out, "h3", "role"))

	// The second deploy changes the bundled motd and adds a file: the role
	// file and the exec are untouched (the exec would run again if it
	// were restarted).
	writeTree(t, src, map[string]string{
		"graph.yaml": fleetGraph(out, "  - name: extra\n    path: "+out+"/{{ .Hostname }}/extra\n    content: \"new\\n\"\n"),
		"files/motd": "motd two\n",
	})
	d2 := deployed("second")
	wait.Until(t, 20*time.Second, onDeploy(d2, hosts...), func() string { return "all on deploy 2:\n" + statusText() })
	for _, h := range hosts {
		if got := readFile(filepath.Join(out, h, "motd")); got != "motd two\n" {
			t.Errorf("%s: motd after deploy 2: %q", h, got)
		}
		if got := readFile(filepath.Join(out, h, "extra")); got != "new\n" {
			t.Errorf("%s: extra: %q", h, got)
		}
		if got := readFile(filepath.Join(out, h, "exec-runs")); got != "ran\n" {
			t.Errorf("%s: the exec ran %q: restarted by a deploy that did not change it", h, got)
		}
	}
	if ino, mtime := inode(t, filepath.Join(out, "h3", "role")); ino != roleIno || !mtime.Equal(roleMtime) {
		t.Errorf("h3's role file was rewritten by deploy 2 (inode %d -> %d, mtime %v -> %v)", roleIno, ino, roleMtime, mtime)
	}
	// Deploys are no drifts; an outside change repaired is one.
	for h, s := range fleetStatus(t, seed) {
		if s.Drifts != 0 {
			t.Errorf("%s: %d drifts counted after two deploys and no outside change", h, s.Drifts)
		}
	}
	if err := os.WriteFile(filepath.Join(out, "h3", "role"), []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, func() bool {
		s := fleetStatus(t, seed)["h3"]
		return s.Drifts == 1 && s.State == deploy.StateConverged && readFile(filepath.Join(out, "h3", "role")) == "web on h3\n"
	}, func() string { return "h3's drift repaired and counted:\n" + statusText() })

	// Deploy 3 needs a zone label, which h5 lacks.
	writeTree(t, src, map[string]string{
		"graph.yaml": fleetGraph(out, "  - name: zone\n    path: "+out+"/{{ .Hostname }}/zone\n    content: \"{{ .Labels.zone }}\\n\"\n"),
	})
	d3 := deployed("zones")
	wait.Until(t, 20*time.Second, onDeploy(d3, "h1", "h2", "h3", "h4"), func() string { return "h1-h4 on deploy 3:\n" + statusText() })
	wait.Until(t, 10*time.Second, func() bool {
		s := fleetStatus(t, seed)["h5"]
		return s.State == deploy.StateInvalid && s.Deploy == d2 && s.Wanted == d3 && strings.Contains(s.Error, "zone")
	}, func() string { return "h5 invalid on deploy 3:\n" + statusText() })
	if _, err := os.Stat(filepath.Join(out, "h5", "zone")); err == nil {
		t.Error("h5 applied part of deploy 3")
	}
	if got := readFile(filepath.Join(out, "h5", "motd")); got != "motd two\n" {
		t.Errorf("h5's motd %q: the running deploy's files were disturbed", got)
	}
	text := statusText()
	t.Logf("mgmt status:\n%s", text)
	if !strings.Contains(text, "invalid") || !strings.Contains(text, fmt.Sprintf("h5: deploy %d: ", d3)) {
		t.Errorf("mgmt status does not say why h5 is invalid:\n%s", text)
	}

	// A rollout depools h3 on deploy 3: its status says so; a later deploy
	// it converges on brings it back (it deletes the key itself).
	cli, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seed}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	depoolKey := cli.Namespace() + "deploy/depool/h3"
	if _, err := cli.Raw().Put(context.Background(), depoolKey, fmt.Sprint(d3)); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, func() bool { return fleetStatus(t, seed)["h3"].State == deploy.StateDepooled },
		func() string { return "h3 depooled:\n" + statusText() })
	d4 := deployed("zones again")
	wait.Until(t, 20*time.Second, onDeploy(d4, "h1", "h2", "h3", "h4"), func() string { return "h1-h4 on deploy 4, h3 repooled:\n" + statusText() })
	if resp, err := cli.Raw().Get(context.Background(), depoolKey); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("h3's depool key still there after it converged on deploy %d (%v)", d4, err)
	}

	// A host killed shows as lost once its lease expires.
	agents["h2"].cmd.Process.Kill()
	agents["h2"].wait(t, 5*time.Second)
	wait.Until(t, deploy.StatusTTL+10*time.Second, func() bool {
		s := fleetStatus(t, seed)["h2"]
		return s.State == deploy.StateLost && s.LastState == deploy.StateConverged && s.Deploy == d4
	}, func() string { return "h2 lost:\n" + statusText() })
	t.Logf("mgmt status with h2 killed:\n%s", statusText())

	// With the cluster gone, h4 restarted runs its cached deploy.
	agents["h4"].cmd.Process.Signal(syscall.SIGTERM)
	if code := agents["h4"].wait(t, 5*time.Second); code != 0 {
		t.Fatalf("h4 stopped with exit %d", code)
	}
	srv.Stop()
	stopped = true
	if _, _, code := mgmt(t, "", "status", "--seeds", seed, "--etcd-namespace", "/mgmt/"); code != 1 {
		t.Errorf("mgmt status with the cluster gone: exit %d, want 1", code)
	}
	os.Remove(filepath.Join(out, "h4", "zone"))
	h4 := start(t, args["h4"]...)
	wait.For(t, 10*time.Second, "h4 converged on its cached deploy", func() bool {
		return readFile(filepath.Join(out, "h4", "zone")) == "z1\n" &&
			strings.Contains(h4.out.String(), fmt.Sprintf(`msg="running the cached deploy" deploy=%d`, d4))
	})
}

func TestRunFromClusterUsage(t *testing.T) {
	_, errOut, code := mgmt(t, "", "run", "--from-cluster", "--file", "g.yaml")
	if code != 2 || !strings.Contains(errOut, "--file and --from-cluster") {
		t.Errorf("run --from-cluster --file: exit %d, %q; want 2 and a usage message", code, errOut)
	}
	if _, errOut, code := mgmt(t, "", "run"); code != 2 || !strings.Contains(errOut, "--from-cluster") {
		t.Errorf("run with neither: exit %d, %q", code, errOut)
	}
	if _, errOut, code := mgmt(t, "", "status"); code != 2 || !strings.Contains(errOut, "--seeds is required") {
		t.Errorf("status without --seeds: exit %d, %q", code, errOut)
	}
}
