package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
)

func TestMain(m *testing.M) {
	before := leakcheck.Take()
	code := m.Run()
	if code == 0 {
		if left := before.Left(5*time.Second, "go.opencensus.io", "grpcsync.NewCallbackSerializer"); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%v\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

// testCluster is a one-member embedded etcd server on free loopback ports
// and a client of it.
func testCluster(t testing.TB) (*etcd.Server, *etcd.Client) {
	t.Helper()
	var srv *etcd.Server
	var err error
	// A free port found can be taken by another process before etcd
	// binds it (the machine is shared): try new ports a few times.
	for attempt := 0; ; attempt++ {
		var addrs []string
		for range 2 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, l.Addr().String())
			l.Close()
		}
		srv, err = etcd.StartServer(context.Background(), etcd.ServerConfig{
			Name:              "deploy-test",
			DataDir:           filepath.Join(t.TempDir(), "etcd"),
			ClientURLs:        []string{"http://" + addrs[0]},
			PeerURLs:          []string{"http://" + addrs[1]},
			HeartbeatInterval: 20 * time.Millisecond,
			ElectionTimeout:   200 * time.Millisecond,
			StartTimeout:      20 * time.Second,
		})
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 2 {
			t.Fatalf("start etcd: %v", err)
		}
	}
	t.Cleanup(srv.Stop)
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func testStore(t testing.TB) (*Store, *etcd.Client) {
	t.Helper()
	_, c := testCluster(t)
	return NewStore(c), c
}

// writeFiles makes the files named in files (name -> content) below dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
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
