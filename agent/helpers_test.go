package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mgmtconfig/mgmt/resources/all"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// freeURL returns a loopback http URL whose port was free a moment ago.
func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// running is an agent.Run in a goroutine of the test.
type running struct {
	cancel context.CancelFunc
	done   chan error
	client string // the embedded etcd server's client URL, if any
}

// startRun runs cfg until the test ends (or stop is called). With a
// cluster wanted and no URLs given, the embedded server gets free ports.
func startRun(t testing.TB, cfg Config) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = t.TempDir()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "self"
	}
	cfg.ConvergedTimeout = -1
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	if len(cfg.Cluster.ClientURLs) > 0 {
		r.client = cfg.Cluster.ClientURLs[0]
	}
	go func() {
		err := Run(ctx, cfg)
		if err != nil && ctx.Err() == nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- err
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the run and returns its error.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after its context ended")
		return nil
	}
}

// clusterCfg is a single-member cluster on free loopback ports.
func clusterCfg(t testing.TB) ClusterConfig {
	return ClusterConfig{ClientURLs: []string{freeURL(t)}, ServerURLs: []string{freeURL(t)}}
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listDir(dir string) string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return strings.Join(names, " ")
}

func countDir(dir string) int {
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// etcdClient is a plain client of the agent's embedded server, standing
// for other hosts.
func etcdClient(t testing.TB, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// putExport writes what host would publish for a file at path.
func putExport(t testing.TB, cli *clientv3.Client, host, name, path, content string) {
	t.Helper()
	key := fmt.Sprintf("/mgmt/exported/%s/file/%s", host, name)
	val := fmt.Sprintf("path: %s\ncontent: %q\n", path, content)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
}

// cpuTime is the CPU (user and system) this process has used so far.
func cpuTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func collectGraph(dir string) string {
	return fmt.Sprintf("resources:\n  noop: [{name: n}]\ncollect:\n- kind: file\n  pattern: %s/\n", dir)
}
