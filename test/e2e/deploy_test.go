package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// deployCluster is an embedded etcd server for `mgmt deploy` to talk to,
// and a raw client to look at what it wrote.
func deployCluster(t *testing.T) (string, *clientv3.Client) {
	t.Helper()
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
		Name: "e2e", DataDir: filepath.Join(t.TempDir(), "etcd"),
		ClientURLs: []string{"http://" + addrs[0]}, PeerURLs: []string{"http://" + addrs[1]},
		HeartbeatInterval: 20 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv.Endpoints()[0], c.Raw()
}

// mgmt runs the binary to its end and returns stdout, stderr and the status.
func mgmt(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

func keyCount(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

const motdGraph = "resources:\n  file:\n  - name: motd\n    path: /etc/motd\n    source: files/motd\n"

func TestDeployCLI(t *testing.T) {
	seeds, cli := deployCluster(t)
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"site/graph.yaml":  motdGraph,
		"site/files/motd":  "hello\n",
		"site/bad.yaml":    "resources:\n  file:\n  - name: motd\n    path: etc/motd\n",
		"site/nofile.yaml": strings.Replace(motdGraph, "files/motd", "files/missing", 1),
	})
	// Refused before anything is stored: nothing written at all.
	_, stderr, rc := mgmt(t, dir, "deploy", "--file", "site/bad.yaml", "--seeds", seeds)
	if rc != 2 || !strings.Contains(stderr, `site/bad.yaml:3:5: file[motd]: path: "etc/motd" is relative`) {
		t.Fatalf("bad graph: rc %d, stderr %q: want 2 naming file:line:col", rc, stderr)
	}
	_, stderr, rc = mgmt(t, dir, "deploy", "--file", "site/nofile.yaml", "--seeds", seeds)
	if rc != 2 || !strings.Contains(stderr, "nofile.yaml:3:5: file[motd]") || !strings.Contains(stderr, "files/missing") {
		t.Fatalf("missing source: rc %d, stderr %q: want 2 naming the resource", rc, stderr)
	}
	if n := keyCount(t, cli); n != 0 {
		t.Fatalf("%d keys in etcd after refused deploys, want 0", n)
	}

	stdout, stderr, rc := mgmt(t, dir, "deploy", "--file", "site/graph.yaml", "--seeds", seeds, "-m", "first")
	if rc != 0 || stdout != "1\n" || !strings.Contains(stderr, "deployed 1: sha256:") {
		t.Fatalf("deploy: rc %d, stdout %q, stderr %q: want 0, just the number, details on stderr", rc, stdout, stderr)
	}
	writeTree(t, dir, map[string]string{"site/files/motd": "hello again\n"})
	if stdout, _, rc = mgmt(t, dir, "deploy", "-f", "site/graph.yaml", "--seeds", seeds); stdout != "2\n" {
		t.Fatalf("second deploy: rc %d, %q", rc, stdout)
	}
	if stdout, stderr, rc = mgmt(t, dir, "deploy", "--rollback", "--seeds", seeds); rc != 0 || stdout != "3\n" {
		t.Fatalf("rollback: rc %d, %q, %q", rc, stdout, stderr)
	}
	stdout, stderr, rc = mgmt(t, dir, "deploy", "--list", "--json", "--seeds", seeds)
	var list struct {
		Current int64         `json:"current"`
		Deploys []deploy.Meta `json:"deploys"`
	}
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || rc != 0 {
		t.Fatalf("--list --json: rc %d, %v: %s %s", rc, err, stdout, stderr)
	}
	if list.Current != 3 || len(list.Deploys) != 3 || list.Deploys[2].RollbackOf != 1 || list.Deploys[0].Message != "first" ||
		list.Deploys[2].Hash != list.Deploys[0].Hash {
		t.Fatalf("history %+v: want 3 deploys, 3 current, a rollback of 1", list)
	}
	// What is stored unpacks into the graph and the file it refers to.
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seeds}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, b, err := deploy.NewStore(c).Get(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	u := filepath.Join(t.TempDir(), "u")
	if err := deploy.Unpack(b, u); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(u, "files/motd")); string(got) != "hello again\n" {
		t.Errorf("deploy 2's files/motd = %q", got)
	}
	// --keep prunes.
	if _, stderr, rc = mgmt(t, dir, "deploy", "-f", "site/graph.yaml", "--seeds", seeds, "--keep", "2"); rc != 0 || !strings.Contains(stderr, "pruned 2 old deploys") {
		t.Fatalf("--keep 2: rc %d, %q", rc, stderr)
	}
	// An unreachable cluster: status 1, not 2.
	if _, stderr, rc = mgmt(t, dir, "deploy", "-f", "site/graph.yaml", "--seeds", "http://127.0.0.1:1"); rc != 1 {
		t.Fatalf("unreachable: rc %d, %q: want 1", rc, stderr)
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestDeployGit(t *testing.T) {
	seeds, cli := deployCluster(t)
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeTree(t, repo, map[string]string{"graph.yaml": motdGraph, "files/motd": "from git\n", "README": "r"})
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "motd from git")
	head := git(t, repo, "rev-parse", "HEAD")

	// Tracked changes: refused.
	writeTree(t, repo, map[string]string{"README": "changed"})
	_, stderr, rc := mgmt(t, repo, "deploy", "--git", repo, "--seeds", seeds)
	if rc != 2 || !strings.Contains(stderr, "not clean") || !strings.Contains(stderr, "README") {
		t.Fatalf("dirty tree: rc %d, %q: want 2 naming README", rc, stderr)
	}
	git(t, repo, "checkout", "-q", "README")
	// A file the graph needs, untracked: refused.
	writeTree(t, repo, map[string]string{"graph.yaml": strings.Replace(motdGraph, "files/motd", "files/new", 1), "files/new": "n"})
	git(t, repo, "commit", "-q", "-m", "use files/new", "graph.yaml")
	_, stderr, rc = mgmt(t, repo, "deploy", "--git", repo, "--seeds", seeds)
	if rc != 2 || !strings.Contains(stderr, "files/new is untracked") {
		t.Fatalf("untracked source: rc %d, %q", rc, stderr)
	}
	if n := keyCount(t, cli); n != 0 {
		t.Fatalf("%d keys after refused git deploys, want 0", n)
	}
	// An older commit can be deployed by --rev; untracked files it does not
	// need (files/new) are no reason to refuse.
	stdout, stderr, rc := mgmt(t, repo, "deploy", "--git", repo, "--rev", head, "--seeds", seeds)
	if rc != 0 || stdout != "1\n" || !strings.Contains(stderr, "motd from git") {
		t.Fatalf("git deploy of %s: rc %d, %q, %q", head, rc, stdout, stderr)
	}
	git(t, repo, "add", "files/new")
	git(t, repo, "commit", "-q", "-m", "add files/new")
	if stdout, stderr, rc = mgmt(t, repo, "deploy", "--git", repo, "--seeds", seeds); rc != 0 || stdout != "2\n" {
		t.Fatalf("git deploy of HEAD: rc %d, %q, %q", rc, stdout, stderr)
	}
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{seeds}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := deploy.NewStore(c)
	m1, _ := st.Meta(context.Background(), 1)
	m2, b, err := st.Get(context.Background(), 2)
	if err != nil || m1.Git == nil || m1.Git.Commit != head || m2.Git == nil || m2.Git.Subject != "add files/new" {
		t.Fatalf("git info: %+v %+v %v", m1.Git, m2.Git, err)
	}
	u := filepath.Join(t.TempDir(), "u")
	if err := deploy.Unpack(b, u); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(u, "files/new")); string(got) != "n" {
		t.Errorf("files/new in deploy 2 = %q", got)
	}
	if _, err := os.Stat(filepath.Join(u, "README")); err == nil {
		t.Errorf("README is in the bundle: the graph does not refer to it")
	}

	// The post-receive hook of examples/ deploys each push to a bare repository.
	bare := filepath.Join(t.TempDir(), "site.git")
	git(t, repo, "clone", "-q", "--bare", repo, bare)
	hook, err := os.ReadFile("../../examples/deploy-post-receive.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bare, "hooks", "post-receive"), hook, 0o755); err != nil {
		t.Fatal(err)
	}
	git(t, bare, "config", "mgmt.seeds", seeds)
	git(t, bare, "config", "mgmt.bin", bin)
	git(t, repo, "remote", "add", "fleet", bare)
	writeTree(t, repo, map[string]string{"files/new": "pushed"})
	git(t, repo, "commit", "-q", "-am", "pushed change")
	out := git(t, repo, "push", "-q", "fleet", "main")
	last, err := st.Latest(context.Background())
	if err != nil || last.Number != 3 || last.Git == nil || last.Git.Subject != "pushed change" {
		t.Fatalf("after the push: latest %+v %v; hook said %s", last, err, out)
	}
}
