package etcd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildServerBinary builds cmd/mgmt-etcd into a temporary directory.
func buildServerBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mgmt-etcd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/mgmt-etcd").CombinedOutput(); err != nil {
		t.Fatalf("build mgmt-etcd: %v\n%s", err, out)
	}
	return bin
}

// startProcessCluster starts the members in cfgs as mgmt-etcd processes of
// bin, at once, and returns them once all are ready.
func startProcessCluster(t testing.TB, bin string, cfgs []ServerConfig) []*Server {
	t.Helper()
	servers := make([]*Server, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() {
			mc, err := cfg.memberConfig()
			if err != nil {
				errs[i] = err
				return
			}
			servers[i], errs[i] = startServerProcess(context.Background(), cfg, mc, bin)
		})
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(s.Stop)
		}
		if errs[i] != nil {
			t.Fatalf("member %s: %v", cfgs[i].Name, errs[i])
		}
	}
	return servers
}

// gone reports whether no process has pid any more (it exited and was
// reaped).
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// TestServerProcessCluster runs a three-member cluster as mgmt-etcd child
// processes: a key put through one member is read through another, a
// member killed with SIGKILL closes its Done, and Stop leaves no process
// behind.
func TestServerProcessCluster(t *testing.T) {
	bin := buildServerBinary(t)
	servers := startProcessCluster(t, bin, clusterConfigs(t, 3))
	for _, s := range servers {
		if s.pid == 0 {
			t.Fatalf("server %s runs in-process, want a child process", s.name)
		}
	}
	ctx := t.Context()
	c1 := connectTest(t, servers[0].Endpoints())
	if _, err := c1.cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c2 := connectTest(t, servers[1].Endpoints())
	resp, err := c2.cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("k through m2 = %v, want v", resp.Kvs)
	}

	// m3 dies for real: its Done closes, the others keep a quorum.
	dead := servers[2]
	if err := syscall.Kill(dead.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dead.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the member's process was killed")
	}
	dead.Stop() // harmless after the process died
	// If m3 led, the first requests time out until m1 and m2 elect anew.
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := c2.cli.Put(ctx, "k", "v2")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put with m3 dead: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, s := range servers[:2] {
		start := time.Now()
		s.Stop()
		t.Logf("Stop of %s took %v", s.name, time.Since(start))
		select {
		case <-s.Done():
		default:
			t.Fatalf("Done of %s not closed after Stop", s.name)
		}
	}
	for _, s := range servers {
		if !gone(s.pid) {
			t.Errorf("process %d of %s still there after Stop", s.pid, s.name)
		}
	}
}

// TestServerProcessJoin joins a member to a one-member cluster, both
// mgmt-etcd processes ($MGMT_ETCD_SERVER), through Join: it starts as a
// learner and waits for its promotion by asking its own process.
func TestServerProcessJoin(t *testing.T) {
	t.Setenv(ServerBinaryEnv, buildServerBinary(t))
	a := startTestServer(t, testServerConfig(t, "a"))
	ca := connectTest(t, a.Endpoints())
	b, err := Join(t.Context(), ca, testServerConfig(t, "b"))
	if err != nil {
		t.Fatalf("b joins a: %v", err)
	}
	t.Cleanup(b.Stop)
	if a.pid == 0 || b.pid == 0 {
		t.Fatalf("pids %d, %d: want child processes", a.pid, b.pid)
	}
	members := wantMembers(t, ca, "a", "b")
	if members["b"].IsLearner {
		t.Fatal("b is still a learner after Join")
	}
	cb := connectTest(t, b.Endpoints())
	if _, err := cb.cli.Put(t.Context(), "k", "from-b"); err != nil {
		t.Fatal(err)
	}
	b.Stop()
	a.Stop()
	if !gone(a.pid) || !gone(b.pid) {
		t.Fatal("a member process is still there after Stop")
	}
}

// TestServerProcessErrors checks that a member process's failures keep
// their sentinel: a port in use, no quorum.
func TestServerProcessErrors(t *testing.T) {
	bin := buildServerBinary(t)
	start := func(cfg ServerConfig) error {
		mc, err := cfg.memberConfig()
		if err != nil {
			t.Fatal(err)
		}
		s, err := startServerProcess(t.Context(), cfg, mc, bin)
		if err == nil {
			s.Stop()
		}
		return err
	}
	cfg := testServerConfig(t, "a")
	s := startTestServer(t, cfg)
	busy := testServerConfig(t, "b")
	busy.ClientURLs = []string{s.Endpoints()[0]}
	if err := start(busy); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("client port in use: err = %v, want EADDRINUSE", err)
	}
	lonely := clusterConfigs(t, 2)[0] // its peer never comes
	lonely.StartTimeout = time.Second
	if err := start(lonely); !errors.Is(err, ErrNotReady) {
		t.Errorf("no quorum: err = %v, want ErrNotReady", err)
	}
}

func TestRelayLogs(t *testing.T) {
	in := `{"time":"2026-01-01T00:00:00Z","level":"WARN","msg":"slow fdatasync","took":"1.5s","logger":"raft"}
{"time":"2026-01-01T00:00:00Z","level":"DEBUG","msg":"peer closed"}
panic: boom
`
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level:       slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	}))
	relayLogs(strings.NewReader(in), l, "m1")
	want := `level=WARN msg="slow fdatasync" member=m1 logger=raft took=1.5s
level=DEBUG msg="peer closed" member=m1
level=WARN msg="etcd member output" member=m1 line="panic: boom"
`
	if buf.String() != want {
		t.Fatalf("relayed:\n%s\nwant:\n%s", buf.String(), want)
	}
	relayLogs(strings.NewReader(in), nil, "m1") // a nil logger drains
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
