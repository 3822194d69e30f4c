package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/metrics"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
)

// countHandler counts the log records whose message is msg.
type countHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// A burst of export snapshots rebuilds the graph at most once per window
// (and once more for the newest), not once per snapshot.
func TestExportsBurstCoalesced(t *testing.T) {
	dir := t.TempDir()
	g := filepath.Join(dir, "g.yaml")
	writeFile(t, g, collectGraph(dir))
	h := &countHandler{msg: "other hosts' exports changed: swapping graphs"}
	log := slog.New(h)
	data, err := readGraph(g)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{cfg: Config{File: g, Hostname: "self"}, log: log, window: 200 * time.Millisecond}
	yg, cg, err := r.build(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	r.source, r.yg = data, yg
	r.eng = engine.New(engine.Config{Hostname: "self", Prefix: dir, Logger: log, Noop: true, ConvergedTimeout: -1})
	snaps := make(chan []etcd.Export)
	ctx, cancel := context.WithCancel(context.Background())
	r.watch = &exportsWatch{kinds: []string{"file"}, snaps: snaps, cancel: cancel}
	engDone := make(chan error, 1)
	go func() { engDone <- r.eng.Run(ctx, cg) }()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		r.rebuildLoop(ctx, nil)
	}()

	const puts = 2000
	began := time.Now()
	var snap []etcd.Export
	for i := range puts {
		snap = append(snap[:len(snap):len(snap)], etcd.Export{Host: "peer", Kind: "file", Name: fmt.Sprintf("f%d", i),
			Params: fmt.Appendf(nil, "path: /x/f%d\ncontent: x\n", i)})
		snaps <- snap
	}
	took := time.Since(began)
	waitFor(t, 10*time.Second, "the newest snapshot in the graph", func() bool {
		n := 0 // resources in the graph, a group counting its members
		for _, rep := range r.eng.Reports() {
			if !rep.Removed {
				n += max(1, rep.Members)
			}
		}
		return n == puts+1
	})
	cancel()
	close(snaps) // the etcd package's side: closed once the watch ends
	<-loopDone
	<-engDone
	rebuilds := h.n.Load()
	// One at the first snapshot, one per window the burst lasted, one for
	// the newest: before coalescing, every snapshot was a rebuild.
	if most := 2 + int64(took/r.window); rebuilds > most {
		t.Fatalf("%d snapshots in %v: %d rebuilds, want at most %d", puts, took, rebuilds, most)
	}
	t.Logf("%d snapshots in %v: %d rebuilds", puts, took, rebuilds)
}

// A reload applies the new collect entries at once: a new pattern places
// new and old exports there, and without collect nothing more is
// collected. The run leaves no goroutine behind.
func TestCollectFollowsReload(t *testing.T) {
	before := leakcheck.Take()
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{dirA, dirB} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g := filepath.Join(base, "g.yaml")
	writeFile(t, g, collectGraph(dirA))
	r := startRun(t, Config{File: g, Watch: true, Cluster: clusterCfg(t)})
	cli := etcdClient(t, r.client)
	putExport(t, cli, "peer", "one", "/x/one", "1")
	waitFor(t, 20*time.Second, "one in a", func() bool { return listDir(dirA) == "one" })

	writeFile(t, g, collectGraph(dirB))
	waitFor(t, 10*time.Second, "one in b after the reload", func() bool { return listDir(dirB) == "one" })
	putExport(t, cli, "peer", "two", "/x/two", "2")
	waitFor(t, 10*time.Second, "two in b", func() bool { return listDir(dirB) == "one two" })
	if got := listDir(dirA); got != "one" {
		t.Fatalf("a holds %q after the pattern moved to b", got)
	}

	// Without collect: nothing more is collected, anywhere. The marker
	// resource says the reload is running before the export is put.
	marker := filepath.Join(base, "marker")
	writeFile(t, g, fmt.Sprintf("resources:\n  file: [{name: m, path: %s, content: m}]\n", marker))
	waitFor(t, 10*time.Second, "the graph without collect", func() bool { return readFileString(marker) == "m" })
	putExport(t, cli, "peer", "three", "/x/three", "3")
	writeFile(t, g, fmt.Sprintf("resources:\n  file: [{name: m, path: %s, content: m2}]\n", marker))
	waitFor(t, 10*time.Second, "the next graph", func() bool { return readFileString(marker) == "m2" })
	if got := listDir(dirB) + "|" + listDir(dirA); got != "one two|one" {
		t.Fatalf("after collect was removed: b, a hold %q", got)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	if left := before.Left(5*time.Second, libraryGoroutines...); len(left) > 0 {
		t.Fatalf("goroutines left after Run returned:\n%s", strings.Join(left, "\n\n"))
	}
}

// libraryGoroutines live as long as the process, started once by etcd's
// and gRPC's libraries, not by a run.
var libraryGoroutines = []string{
	"go.opencensus.io/stats/view.(*worker).start",
	"google.golang.org/grpc/internal/grpcsync.NewCallbackSerializer",
	"github.com/mgmtconfig/mgmt/fswatch.New", "github.com/fsnotify/fsnotify.newBackend", // the process's one inotify
}

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// A graph that starts collecting on a reload starts etcd then, without a
// restart. (No cluster flag: etcd takes its default loopback ports.)
func TestClusterStartedByReload(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:2379", "127.0.0.1:2380"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("etcd's default port is busy, so this test cannot run: %v", err)
		}
		l.Close()
	}
	base := t.TempDir()
	dir := filepath.Join(base, "c")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(base, "g.yaml")
	marker := filepath.Join(base, "marker")
	writeFile(t, g, fmt.Sprintf("resources:\n  file: [{name: m, path: %s, content: m}]\n", marker))
	startRun(t, Config{File: g, Watch: true})
	waitFor(t, 10*time.Second, "the first graph applied", func() bool { return readFileString(marker) == "m" })
	writeFile(t, g, collectGraph(dir))
	var cli interface{ Close() error }
	waitFor(t, 20*time.Second, "etcd started by the reload", func() bool {
		c, err := etcd.Connect(context.Background(), etcd.ClientConfig{Endpoints: []string{"http://127.0.0.1:2379"}, DialTimeout: 200 * time.Millisecond})
		if err != nil {
			return false
		}
		cli = c
		return true
	})
	cli.Close()
	putExport(t, etcdClient(t, "http://127.0.0.1:2379"), "peer", "one", "/x/one", "1")
	waitFor(t, 10*time.Second, "one collected", func() bool { return listDir(dir) == "one" })
}

// The stop ends at its deadline even if etcd never stops and a metrics
// client holds its connection open with half a request.
func TestStopDeadline(t *testing.T) {
	ms, err := metrics.Listen("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ms.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	defer close(hang)
	published := make(chan struct{})
	close(published)
	r := &runner{log: slog.New(slog.DiscardHandler), metrics: ms, cluster: &cluster{
		log: slog.New(slog.DiscardHandler), cancel: func() {}, published: published,
		stopEtcd: func() { <-hang },
	}}
	began := time.Now()
	r.stop(began.Add(300 * time.Millisecond))
	if took := time.Since(began); took > time.Second {
		t.Fatalf("stop took %v, deadline 300ms", took)
	}
	// The metrics server is closed, the held connection with it.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the held metrics connection is still open")
	}
}

// A publisher stuck in a request to a frozen member is under the deadline
// too, not only etcd's own stop.
func TestStopDeadlineStuckPublisher(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	r := &runner{log: slog.New(slog.DiscardHandler), cluster: &cluster{
		log: slog.New(slog.DiscardHandler), cancel: func() {}, published: hang,
		stopEtcd: func() {},
	}}
	began := time.Now()
	r.stop(began.Add(300 * time.Millisecond))
	if took := time.Since(began); took > time.Second {
		t.Fatalf("stop took %v, deadline 300ms", took)
	}
}

// The cluster flags that say where the cluster is start etcd; those that
// say how to talk to it (namespace, TLS, advertised URLs) do not, as
// docs/cli.md says.
func TestClusterFlagsThatStartEtcd(t *testing.T) {
	for _, tc := range []struct {
		name string
		cc   ClusterConfig
		want bool
	}{
		{"none", ClusterConfig{}, false},
		{"seeds", ClusterConfig{Seeds: []string{"http://h:2379"}}, true},
		{"no-server", ClusterConfig{NoServer: true}, true},
		{"client-urls", ClusterConfig{ClientURLs: []string{"http://h:2379"}}, true},
		{"server-urls", ClusterConfig{ServerURLs: []string{"http://h:2380"}}, true},
		{"ideal-cluster-size", ClusterConfig{IdealClusterSize: 3}, true},
		{"etcd-namespace", ClusterConfig{Namespace: "/x/"}, false},
		{"tls", ClusterConfig{TLS: &etcd.TLSFiles{CA: "ca", Cert: "c", Key: "k"}}, false},
		{"advertise", ClusterConfig{AdvertiseClientURLs: []string{"http://h:2379"}, AdvertiseServerURLs: []string{"http://h:2380"}}, false},
	} {
		if got := tc.cc.wanted(); got != tc.want {
			t.Errorf("%s: wanted() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Two hosts' exports that land on one path, or on a path a local resource
// manages: the local resource wins, then the first host in name order;
// the others are left out and the graph still compiles (docs/security.md).
func TestCollidingExports(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "mine")
	g := filepath.Join(dir, "g.yaml")
	writeFile(t, g, fmt.Sprintf("resources:\n  file: [{name: mine, path: %s, content: local}]\ncollect:\n- kind: file\n  pattern: %s/\n", local, dir))
	r := &runner{cfg: Config{File: g, Hostname: "self"}, log: slog.New(slog.DiscardHandler)}
	ex := func(host, name, path, content string) etcd.Export {
		return etcd.Export{Host: host, Kind: "file", Name: name, Params: fmt.Appendf(nil, "path: %s\ncontent: %s\n", path, content)}
	}
	// Sorted by host, as a snapshot is.
	r.snap = []etcd.Export{
		ex("a", "fa", "/a/same", "from-a"),
		ex("a", "mine-a", "/a/mine", "a-over-local"),
		ex("b", "fb", "/b/same", "from-b"),
		ex("b", "fa", "/b/other", "b-same-name"),
	}
	data, _ := readGraph(g)
	_, cg, err := r.build(context.Background(), data)
	if err != nil {
		t.Fatalf("the graph with colliding exports is refused: %v", err)
	}
	var got []string
	for _, gv := range cg.Vertices() {
		// A group (the files of a directory) lists its members.
		vs := append([]*engine.Vertex{{Kind: gv.Kind, Name: gv.Name, Source: gv.Source}}, gv.Grouped...)
		for _, ev := range vs {
			src := "local"
			if strings.HasPrefix(ev.Source, "etcd:") {
				src = ev.Source
			}
			got = append(got, ev.String()+"@"+src)
		}
	}
	slices.Sort(got)
	if want := "file[fa]@etcd:a file[mine]@local"; strings.Join(got, " ") != want {
		t.Fatalf("graph holds %v, want %s", got, want)
	}
}
