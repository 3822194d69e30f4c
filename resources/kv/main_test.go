package kv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
)

// The tests share one real embedded etcd server, started on first use;
// each test keeps its keys under a namespace of its own.
var (
	srvOnce sync.Once
	srv     *etcd.Server
	srvErr  error
	srvDir  string
)

// TestMain stops the shared server after the tests and fails the run if
// a Watch or loop left a goroutine behind.
func TestMain(m *testing.M) {
	before := leakcheck.Take()
	code := m.Run()
	if srv != nil {
		srv.Stop()
		os.RemoveAll(srvDir)
	}
	if code == 0 {
		// Started once per process by gRPC and etcd's libraries, not per
		// server or client.
		if left := before.Left(5*time.Second, "go.opencensus.io/stats/view.(*worker).start",
			"grpcsync.NewCallbackSerializer", "os/signal.signal_recv", "os/signal.loop"); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines leaked:\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

func freeURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// server returns the shared etcd server, starting it on first use.
func server(t testing.TB) *etcd.Server {
	t.Helper()
	srvOnce.Do(func() {
		srvDir, srvErr = os.MkdirTemp("", "kv-etcd-")
		if srvErr != nil {
			return
		}
		srv, srvErr = etcd.StartServer(context.Background(), etcd.ServerConfig{
			Name:              "kvtest",
			DataDir:           filepath.Join(srvDir, "etcd"),
			ClientURLs:        []string{freeURL(t)},
			PeerURLs:          []string{freeURL(t)},
			HeartbeatInterval: 20 * time.Millisecond,
			ElectionTimeout:   200 * time.Millisecond,
			StartTimeout:      20 * time.Second,
		})
	})
	if srvErr != nil {
		t.Fatalf("start etcd: %v", srvErr)
	}
	return srv
}

// client connects to the shared server under a namespace of the test's
// own, closed when the test ends.
func client(t testing.TB) *etcd.Client {
	t.Helper()
	c, err := etcd.Connect(context.Background(), etcd.ClientConfig{
		Endpoints: server(t).Endpoints(),
		Namespace: "/" + strings.ReplaceAll(t.Name(), "/", "_") + "/",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
