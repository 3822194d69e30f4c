package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/yamlgraph"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func kvGraph(host string) string {
	return fmt.Sprintf("resources:\n  kv:\n  - {name: role, key: role, value: %s, mapped: true}\n  - {name: hello, key: hello, value: world}\n", host)
}

// getKey is a key's value as another host sees it, "" when absent.
func getKey(t testing.TB, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// TestKVMappedTwoAgents: two agents, one running etcd and one its client,
// each keep their own value of one mapped key, and both values are
// visible in the cluster; the shared key is the one both write. An
// outside change of the client agent's key is repaired through its
// watch.
func TestKVMappedTwoAgents(t *testing.T) {
	dir := t.TempDir()
	ga, gb := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	writeFile(t, ga, kvGraph("web"))
	writeFile(t, gb, kvGraph("db"))
	a := startRun(t, Config{File: ga, Hostname: "a", Cluster: clusterCfg(t)})
	startRun(t, Config{File: gb, Hostname: "b", Cluster: ClusterConfig{Seeds: []string{a.client}, NoServer: true}})
	cli := etcdClient(t, a.client)
	both := func() bool {
		return getKey(t, cli, "/mgmt/kv/a/role") == "web" && getKey(t, cli, "/mgmt/kv/b/role") == "db" &&
			getKey(t, cli, "/mgmt/kv/hello") == "world"
	}
	waitFor(t, 30*time.Second, "each agent's mapped value and the shared key", both)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/mgmt/kv/b/role", "drifted"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b's value repaired", both)
}

// TestNeedsClusterForKV: a graph holding a kv starts etcd as one that
// exports does; a graph without one does not.
func TestNeedsClusterForKV(t *testing.T) {
	for _, tc := range []struct {
		graph string
		want  bool
	}{
		{"resources:\n  kv: [{name: k, value: v}]\n", true},
		{"resources:\n  noop: [{name: n}]\n", false},
	} {
		yg, err := yamlgraph.Parse("g.yaml", []byte(tc.graph))
		if err != nil {
			t.Fatal(err)
		}
		if got := needsCluster(yg); got != tc.want {
			t.Errorf("%q: needsCluster = %v, want %v", tc.graph, got, tc.want)
		}
	}
}

// TestClusterKVWithoutCluster: without a cluster the store fails at once;
// while one is being joined (a deploy run from the cluster) it waits for
// it, until its context ends.
func TestClusterKVWithoutCluster(t *testing.T) {
	if _, _, err := newClusterKV(false).Get(t.Context(), "k"); !errors.Is(err, errNoCluster) {
		t.Fatalf("no cluster: %v, want errNoCluster", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := newClusterKV(true).CompareAndSwap(ctx, "k", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) < 50*time.Millisecond {
		t.Fatalf("joining: %v after %v, want to wait for the cluster until the deadline", err, time.Since(began))
	}
	if err := newClusterKV(true).Watch(ctx, "k", func() {}); err != nil {
		t.Fatalf("a watch whose context ended while joining: %v, want nil", err)
	}
}
