package e2e

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// buildSplit builds mgmt with the mgmt_split_server tag, carrying a
// mgmt-etcd built first, as make build does (an overlay stands for
// etcd/serverbin/mgmt-etcd, so that the test writes nothing in the tree).
func buildSplit(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	server := filepath.Join(dir, "mgmt-etcd")
	if out, err := exec.Command("go", "build", "-o", server, "../../cmd/mgmt-etcd").CombinedOutput(); err != nil {
		t.Fatalf("build mgmt-etcd: %v\n%s", err, out)
	}
	embedAt, err := filepath.Abs("../../etcd/serverbin/mgmt-etcd")
	if err != nil {
		t.Fatal(err)
	}
	overlay, err := json.Marshal(map[string]any{"Replace": map[string]string{embedAt: server}})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	split := filepath.Join(dir, "mgmt")
	build := exec.Command("go", "build", "-tags", "mgmt_split_server", "-overlay", overlayFile, "-o", split, "../../cmd/mgmt")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build mgmt -tags mgmt_split_server: %v\n%s", err, out)
	}
	return split
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestSplitServerAgent runs agents of a mgmt built with the
// mgmt_split_server tag, which links no etcd server and runs the mgmt-etcd
// it carries as a child process: a one-shot run of a kv graph converges
// and exits, its member gone with it; an agent killed with SIGKILL takes
// its member down too (Pdeathsig).
func TestSplitServerAgent(t *testing.T) {
	split := buildSplit(t)
	info, err := buildinfo.ReadFile(split)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range info.Deps {
		if strings.HasPrefix(d.Path, "go.etcd.io/etcd/server") {
			t.Fatalf("the split build links %s", d.Path)
		}
	}

	dir := t.TempDir()
	g := writeGraph(t, dir, "resources:\n  kv:\n  - name: kv1\n    key: hello\n    value: world\n")
	client, peer := freePort(t), freePort(t)
	args := []string{"run", "--file", g, "--prefix", dir, "--hostname", "h",
		"--client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
		"--server-urls", fmt.Sprintf("http://127.0.0.1:%d", peer)}

	a := startBinary(t, split, append(args, "--converged-timeout=1")...)
	if code := a.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, a.out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
		t.Fatalf("no etcd data after the run: %v", err)
	}
	if !portFree(client) || !portFree(peer) {
		t.Fatal("etcd's ports are still taken after the agent exited")
	}

	// An agent killed outright: its member stops with it.
	a = startBinary(t, split, args...)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", client)}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		resp, err := cli.Get(ctx, "/mgmt/kv/hello")
		cancel()
		if err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "world" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kv hello not world after 30s (last: %v)\n%s", err, a.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	for deadline := time.Now().Add(15 * time.Second); !portFree(client) || !portFree(peer); {
		if time.Now().After(deadline) {
			t.Fatal("the member still listens 15s after its agent was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
