package etcd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestServerStartStop(t *testing.T) {
	cfg := testServerConfig(t, "a")
	s := startTestServer(t, cfg)
	if got := s.Endpoints(); len(got) != 1 || got[0] != cfg.ClientURLs[0] {
		t.Fatalf("Endpoints() = %v, want %v", got, cfg.ClientURLs)
	}
	c := connectTest(t, s.Endpoints())
	ctx := context.Background()
	if _, err := c.cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	// An open watch stream must not hold the shutdown.
	wch := c.cli.Watch(ctx, "k")
	if _, err := c.cli.Put(ctx, "k", "v2"); err != nil {
		t.Fatal(err)
	}
	if wr := <-wch; len(wr.Events) != 1 {
		t.Fatalf("watch got %v", wr.Events)
	}

	start := time.Now()
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Logf("Stop with an open watch took %v", time.Since(start))
	case <-time.After(15 * time.Second):
		t.Fatal("Stop hung")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	s.Stop() // a second Stop is harmless

	// The data survives a restart.
	s2 := startTestServer(t, cfg)
	c2 := connectTest(t, s2.Endpoints())
	resp, err := c2.cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v2" {
		t.Fatalf("after restart k = %v, want v2", resp.Kvs)
	}
}

func TestServerBusyPort(t *testing.T) {
	for _, which := range []string{"client", "peer"} {
		t.Run(which, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			cfg := testServerConfig(t, "a")
			if which == "client" {
				cfg.ClientURLs = []string{"http://" + l.Addr().String()}
			} else {
				cfg.PeerURLs = []string{"http://" + l.Addr().String()}
			}
			s, err := StartServer(context.Background(), cfg)
			if err == nil {
				s.Stop()
				t.Fatalf("started on busy %s port %s", which, l.Addr())
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("err = %v, want EADDRINUSE", err)
			}
			t.Logf("busy port: %v", err)
		})
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tlsFiles := &TLSFiles{CA: "ca", Cert: "c", Key: "k"}
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
	}{
		{"no name", ServerConfig{DataDir: dir}},
		{"no data dir", ServerConfig{Name: "a"}},
		{"https without TLS", ServerConfig{Name: "a", DataDir: dir, ClientURLs: []string{"https://127.0.0.1:1"}}},
		{"http with TLS", ServerConfig{Name: "a", DataDir: dir, TLS: tlsFiles, PeerURLs: []string{"http://127.0.0.1:1"}}},
		{"TLS without key", ServerConfig{Name: "a", DataDir: dir, TLS: &TLSFiles{CA: "ca", Cert: "c"}}},
		{"no port scheme", ServerConfig{Name: "a", DataDir: dir, ClientURLs: []string{"127.0.0.1:2379"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := StartServer(context.Background(), tc.cfg)
			if err == nil {
				s.Stop()
				t.Fatal("started")
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestServerNotReadyWithoutQuorum(t *testing.T) {
	// A member of a two-member cluster whose other member never comes
	// cannot become ready: a clear error after the start timeout.
	cfg := testServerConfig(t, "a")
	other := freeAddrs(t, 1)[0]
	cfg.InitialCluster = "a=" + cfg.PeerURLs[0] + ",b=http://" + other
	cfg.StartTimeout = 500 * time.Millisecond
	s, err := StartServer(context.Background(), cfg)
	if err == nil {
		s.Stop()
		t.Fatal("ready without quorum")
	}
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	addr := freeAddrs(t, 1)[0] // nothing listens there
	start := time.Now()
	c, err := Connect(context.Background(), ClientConfig{
		Endpoints:   []string{"http://" + addr},
		DialTimeout: 300 * time.Millisecond,
	})
	if err == nil {
		c.Close()
		t.Fatal("connected to nothing")
	}
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Connect took %v with a 300ms dial timeout", d)
	}
	t.Logf("unreachable seed: %v", err)

	if _, err := Connect(context.Background(), ClientConfig{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no endpoints: err = %v, want ErrConfig", err)
	}
}

func TestConnectCanceled(t *testing.T) {
	addr := freeAddrs(t, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Connect(ctx, ClientConfig{Endpoints: []string{"http://" + addr}, DialTimeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestServerDataDirIsUsed(t *testing.T) {
	cfg := testServerConfig(t, "a")
	startTestServer(t, cfg)
	if m, _ := filepath.Glob(filepath.Join(cfg.DataDir, "member", "wal", "*.wal")); len(m) == 0 {
		t.Fatalf("no WAL under %s", cfg.DataDir)
	}
}
