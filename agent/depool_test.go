package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A depooled agent withdraws its exports within a second (a collector
// drops them) and publishes them again when its depool key goes.
func TestDepoolWithdrawsExports(t *testing.T) {
	dir := t.TempDir()
	g := filepath.Join(dir, "g.yaml")
	writeFile(t, g, fmt.Sprintf("resources:\n  file:\n  - name: \"@@backend-self\"\n    path: %s\n    content: up\n", filepath.Join(dir, "out")))
	cc := clusterCfg(t)
	startRun(t, Config{File: g, Cluster: cc})
	cli := etcdClient(t, cc.ClientURLs[0])
	exports := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, "/mgmt/exported/self/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return -1
		}
		return resp.Count
	}
	waitFor(t, 20*time.Second, "the export published", func() bool { return exports() == 1 })
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/mgmt/deploy/depool/self", "2"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, time.Second, "the export withdrawn once depooled", func() bool { return exports() == 0 })
	t.Logf("withdrawn %v after the depool key was set", time.Since(start).Round(time.Millisecond))
	if _, err := cli.Delete(ctx, "/mgmt/deploy/depool/self"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, time.Second, "the export back once re-pooled", func() bool { return exports() == 1 })
	t.Logf("back %v after the depool key went", time.Since(start).Round(time.Millisecond))
}
