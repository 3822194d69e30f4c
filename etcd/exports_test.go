package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// demoExports is what host h exports in the three-host demo: two files it
// exports and one exec that collectors of files must not see.
func demoExports(h, version string) []Export {
	return []Export{
		{Kind: "file", Name: "file3" + h, Params: []byte("path: /tmp/mgmt" + h + "/f3" + h + "\ncontent: " + version + "\n")},
		{Kind: "file", Name: "file4" + h, Params: []byte("path: /tmp/mgmt" + h + "/f4" + h + "\ncontent: " + version + "\n")},
		{Kind: "exec", Name: "exec" + h, Params: []byte("cmd: true\n")},
	}
}

// names renders a snapshot as host/kind/name strings.
func names(s []Export) []string {
	var out []string
	for _, e := range s {
		out = append(out, e.Host+"/"+e.Kind+"/"+e.Name)
	}
	return out
}

func hasNames(want ...string) func([]Export) bool {
	return func(s []Export) bool { return slices.Equal(names(s), want) }
}

// exchange runs the three-host demo over the given clients (one per
// host): each publishes, each collects the others' files.
func exchange(t *testing.T, clients map[string]*Client) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hosts := []string{"a", "b", "c"}
	watches := map[string]<-chan []Export{}
	for _, h := range hosts {
		ch, err := clients[h].WatchExports(ctx, h, []string{"file"})
		if err != nil {
			t.Fatal(err)
		}
		watches[h] = ch
	}
	for _, h := range hosts {
		if err := clients[h].Publish(ctx, h, demoExports(h, "v1")); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"a": {"b/file/file3b", "b/file/file4b", "c/file/file3c", "c/file/file4c"},
		"b": {"a/file/file3a", "a/file/file4a", "c/file/file3c", "c/file/file4c"},
		"c": {"a/file/file3a", "a/file/file4a", "b/file/file3b", "b/file/file4b"},
	}
	for _, h := range hosts {
		s := waitFor(t, watches[h], 10*time.Second, fmt.Sprint(want[h]), hasNames(want[h]...))
		for _, e := range s {
			if e.Host == h || e.Kind != "file" {
				t.Fatalf("%s collected %s/%s/%s", h, e.Host, e.Kind, e.Name)
			}
			if string(e.Params) != "path: /tmp/mgmt"+e.Host+"/f"+e.Name[4:]+"\ncontent: v1\n" {
				t.Fatalf("%s got params %q for %s", h, e.Params, e.Name)
			}
		}
	}

	// b changes one export's parameters and drops the other.
	next := demoExports("b", "v2")
	next = append(next[:1], next[2])
	if err := clients["b"].Publish(ctx, "b", next); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "c"} {
		waitFor(t, watches[h], 10*time.Second, "b's new set", func(s []Export) bool {
			var bs []Export
			for _, e := range s {
				if e.Host == "b" {
					bs = append(bs, e)
				}
			}
			return len(bs) == 1 && bs[0].Name == "file3b" && string(bs[0].Params) == "path: /tmp/mgmtb/f3b\ncontent: v2\n"
		})
	}

	// c withdraws everything.
	if err := clients["c"].Publish(ctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, watches["a"], 10*time.Second, "c gone", hasNames("b/file/file3b"))
	waitFor(t, watches["b"], 10*time.Second, "c gone", hasNames("a/file/file3a", "a/file/file4a"))

	cancel()
	for h, ch := range watches {
		for range ch { // drained and closed once ctx ends
		}
		t.Logf("%s: watch closed", h)
	}
}

func TestPublishWatchOneServer(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	clients := map[string]*Client{}
	for _, h := range []string{"a", "b", "c"} {
		clients[h] = connectTest(t, s.Endpoints())
	}
	exchange(t, clients)
}

func TestWatchFirstSnapshotAndFilter(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	c := connectTest(t, s.Endpoints())
	ctx := t.Context()
	for _, h := range []string{"a", "b"} {
		if err := c.Publish(ctx, h, demoExports(h, "v1")); err != nil {
			t.Fatal(err)
		}
	}
	// Something else in the namespace and outside it is ignored.
	if _, err := c.cli.Put(ctx, c.exportsPrefix()+"junk", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.cli.Put(ctx, "/other/exported/b/file/x", "x"); err != nil {
		t.Fatal(err)
	}

	ch, err := c.WatchExports(ctx, "a", []string{"exec", "file"})
	if err != nil {
		t.Fatal(err)
	}
	got := names(receive(t, ch, 5*time.Second))
	want := []string{"b/exec/execb", "b/file/file3b", "b/file/file4b"}
	if !slices.Equal(got, want) {
		t.Fatalf("first snapshot %v, want %v", got, want)
	}

	empty, err := c.WatchExports(ctx, "a", []string{"pkg"})
	if err != nil {
		t.Fatal(err)
	}
	if s := receive(t, empty, 5*time.Second); len(s) != 0 {
		t.Fatalf("first snapshot for pkg: %v, want empty", names(s))
	}

	// Publishing an unchanged set writes nothing and wakes nobody.
	before, err := c.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "b", demoExports("b", "v1")); err != nil {
		t.Fatal(err)
	}
	after, err := c.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if before.Header.Revision != after.Header.Revision {
		t.Fatalf("unchanged publish moved the revision from %d to %d", before.Header.Revision, after.Header.Revision)
	}

	if _, err := c.WatchExports(ctx, "a", nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("no kinds: err = %v, want ErrConfig", err)
	}
}

func TestPublishNamesAreEscaped(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	c := connectTest(t, s.Endpoints())
	ctx := t.Context()
	odd := []Export{
		{Kind: "file", Name: "/etc/motd", Params: []byte("a")},
		{Kind: "file", Name: "../x%2F", Params: []byte("b")},
		{Kind: "file", Name: "with space/and/slashes", Params: []byte("c")},
	}
	if err := c.Publish(ctx, "host/with/slash", odd); err != nil {
		t.Fatal(err)
	}
	ch, err := c.WatchExports(ctx, "a", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	got := names(receive(t, ch, 5*time.Second))
	want := []string{"host/with/slash/file/../x%2F", "host/with/slash/file//etc/motd", "host/with/slash/file/with space/and/slashes"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestPublishInvalid(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	c := connectTest(t, s.Endpoints())
	for _, tc := range []struct {
		name    string
		host    string
		exports []Export
	}{
		{"no host", "", nil},
		{"no kind", "a", []Export{{Name: "x"}}},
		{"no name", "a", []Export{{Kind: "file"}}},
		{"twice", "a", []Export{{Kind: "file", Name: "x"}, {Kind: "file", Name: "x"}}},
		{"foreign host", "a", []Export{{Host: "b", Kind: "file", Name: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Publish(t.Context(), tc.host, tc.exports); !errors.Is(err, ErrInvalidExport) {
				t.Fatalf("err = %v, want ErrInvalidExport", err)
			}
		})
	}
	resp, err := c.cli.Get(t.Context(), c.exportsPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Fatalf("%d keys written by invalid publishes", resp.Count)
	}
}

// TestPublishAtomic alternates a host between two sets of 100 exports that
// share half their names (with different parameters) and checks that a
// watcher only ever sees one whole set.
func TestPublishAtomic(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	pub := connectTest(t, s.Endpoints())
	sub := connectTest(t, s.Endpoints())
	ctx := t.Context()

	set := func(tag string, lo int) []Export {
		var out []Export
		for i := lo; i < lo+100; i++ {
			out = append(out, Export{Kind: "file", Name: fmt.Sprintf("f%03d", i), Params: []byte(tag)})
		}
		return out
	}
	sets := [][]Export{set("A", 0), set("B", 50)}
	which := func(snap []Export) int {
		for i, want := range sets {
			if len(snap) != len(want) {
				continue
			}
			whole := true
			for j := range snap {
				if snap[j].Host != "b" || snap[j].Name != want[j].Name || string(snap[j].Params) != string(want[j].Params) {
					whole = false
					break
				}
			}
			if whole {
				return i
			}
		}
		return -1
	}

	ch, err := sub.WatchExports(ctx, "a", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	if first := receive(t, ch, 5*time.Second); len(first) != 0 {
		t.Fatalf("first snapshot not empty: %d exports", len(first))
	}
	const rounds = 40
	published := make(chan error, 1)
	go func() {
		for i := range rounds {
			if err := pub.Publish(ctx, "b", sets[i%2]); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	seen := 0
	last := -1
	for done := false; !done; {
		select {
		case err := <-published:
			if err != nil {
				t.Fatal(err)
			}
			published = nil
			done = last == (rounds-1)%2
		case snap := <-ch:
			w := which(snap)
			if w < 0 {
				t.Fatalf("snapshot %d is neither whole set: %d exports, %s", seen, len(snap), describe(snap[:min(len(snap), 6)]))
			}
			seen++
			last = w
			done = published == nil && w == (rounds-1)%2
		case <-time.After(20 * time.Second):
			t.Fatalf("stuck after %d snapshots", seen)
		}
	}
	t.Logf("%d publishes, %d snapshots seen, all whole; last was set %d", rounds, seen, last)
}

// TestWatchSlowReader checks that a reader that does not read is never in
// the way and, when it reads again, gets the latest state, not a backlog.
func TestWatchSlowReader(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	pub := connectTest(t, s.Endpoints())
	sub := connectTest(t, s.Endpoints())
	ctx := t.Context()
	ch, err := sub.WatchExports(ctx, "a", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		if err := pub.Publish(ctx, "b", []Export{{Kind: "file", Name: "f", Params: fmt.Appendf(nil, "%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	final := fmt.Sprint(n - 1)
	got := 0
	waitFor(t, ch, 10*time.Second, "the last version", func(s []Export) bool {
		got++
		return len(s) == 1 && string(s[0].Params) == final
	})
	// At most: the first (empty) snapshot, whatever was pending when the
	// watcher woke, and the latest.
	if got > 3 {
		t.Fatalf("read %d snapshots to reach the latest of %d publishes: a backlog was kept", got, n)
	}
	t.Logf("%d publishes unread, then %d snapshots to the latest", n, got)
}

func TestWatchEndsWithClient(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "a"))
	c, err := Connect(t.Context(), ClientConfig{Endpoints: s.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.WatchExports(context.Background(), "a", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ch, 5*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the watch goroutine, which closed the channel.
	if _, open := <-ch; open {
		t.Fatal("channel still open after Close")
	}
	if _, err := c.WatchExports(context.Background(), "a", []string{"file"}); err == nil {
		t.Fatal("WatchExports on a closed client succeeded")
	}
}

// TestWatchSurvivesServerRestart stops the only server under a watcher and
// starts it again: the watcher reads again and carries on.
func TestWatchSurvivesServerRestart(t *testing.T) {
	cfg := testServerConfig(t, "a")
	s := startTestServer(t, cfg)
	pub := connectTest(t, s.Endpoints())
	sub := connectTest(t, s.Endpoints())
	ctx := t.Context()
	ch, err := sub.WatchExports(ctx, "a", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "b", []Export{{Kind: "file", Name: "f", Params: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 5*time.Second, "version 1", func(s []Export) bool { return len(s) == 1 && string(s[0].Params) == "1" })
	s.Stop()
	startTestServer(t, cfg)
	if err := pub.Publish(ctx, "b", []Export{{Kind: "file", Name: "f", Params: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 15*time.Second, "version 2", func(s []Export) bool { return len(s) == 1 && string(s[0].Params) == "2" })
}
