package etcd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkScale measures the exchange's costs as the fleet grows, against
// one member running in a child process (so that its memory is its own):
// `hosts` hosts have published the demo's two exports each, and `watchers`
// agents follow the exports through their own connections.
//
//   - snapshot-KB: the keys and values under the exports prefix, which every
//     collector reads whole when it starts or recovers a watch;
//   - load-ms: one WatchExports, from the call to its first snapshot;
//   - update-ms: one collector's CPU time to turn one change into a new
//     snapshot (WatchExports rebuilds and sorts the whole set);
//   - fanout-ms: from the start of a Publish until every watcher received
//     the event (median over the iterations; one op is one publish), with
//     plain etcd watches on the prefix, as each WatchExports holds one;
//   - herd-ms: 100 collectors reading everything at once, as all those of a
//     member do when their watches are interrupted (a leader election), and
//     herd-member-MB the member's RSS right after;
//   - member-MB: the member's RSS with the exports loaded, and watch-KB its
//     growth per watcher (connection and watch stream; RSS, so only a rough
//     figure), watch-goroutines the member's goroutines per watcher.
func BenchmarkScale(b *testing.B) {
	for _, tc := range []struct{ hosts, watchers int }{
		{1000, 100}, {1000, 1000}, {10000, 100}, {10000, 1000},
	} {
		b.Run(fmt.Sprintf("hosts=%d/watchers=%d", tc.hosts, tc.watchers), func(b *testing.B) {
			benchScale(b, tc.hosts, tc.watchers)
		})
	}
}

// scaleParams is what the demo's file resource exports: YAML parameters.
func scaleParams(host string, n int, version string) []byte {
	return fmt.Appendf(nil, "path: /tmp/mgmt%s/f%d%s\ncontent: |\n  i am f%d, exported from host %s%s\n", host, n, host, n, host, version)
}

func scaleExports(host, version string) []Export {
	return []Export{
		{Kind: "file", Name: "file3" + host, Params: scaleParams(host, 3, version)},
		{Kind: "file", Name: "file4" + host, Params: scaleParams(host, 4, version)},
	}
}

func benchScale(b *testing.B, hosts, watchers int) {
	if testing.Short() {
		b.Skip("loads thousands of exports into etcd")
	}
	cfg := testServerConfig(b, "m1")
	// Real raft timings: a busy single core must not make it lose its
	// own leadership.
	cfg.HeartbeatInterval, cfg.ElectionTimeout = 0, 0
	m := startMemberProcess(b, cfg)
	eps := cfg.ClientURLs

	// Publish every host's exports, a few publishers at a time.
	const publishers = 16
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		c := connectTest(b, eps)
		wg.Go(func() {
			for h := p; h < hosts; h += publishers {
				host := fmt.Sprintf("h%05d", h)
				if err := c.Publish(b.Context(), host, scaleExports(host, "")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	c := connectTest(b, eps)
	resp, err := c.cli.Get(b.Context(), c.exportsPrefix(), clientv3.WithPrefix())
	if err != nil {
		b.Fatal(err)
	}
	if len(resp.Kvs) != 2*hosts {
		b.Fatalf("%d exports stored, want %d", len(resp.Kvs), 2*hosts)
	}
	size := 0
	for _, kv := range resp.Kvs {
		size += len(kv.Key) + len(kv.Value)
	}

	// One collector starting: its first snapshot.
	var loads []float64
	for range 5 {
		ctx, cancel := context.WithCancel(b.Context())
		t0 := time.Now()
		ch, err := c.WatchExports(ctx, "h-new", []string{"file"})
		if err != nil {
			b.Fatal(err)
		}
		snap := receive(b, ch, 30*time.Second)
		loads = append(loads, ms(time.Since(t0)))
		cancel()
		for range ch {
		}
		if len(snap) != 2*hosts {
			b.Fatalf("first snapshot of %d exports, want %d", len(snap), 2*hosts)
		}
	}

	// One collector's work for one change: a new snapshot of everything.
	w := &exportWatch{c: c, self: "h-new", kinds: map[string]bool{"file": true}, state: map[string]Export{}}
	if _, err := w.load(b.Context()); err != nil {
		b.Fatal(err)
	}
	var updates []float64
	for range 20 {
		w.sent() // so that update compares with a snapshot already received
		t0 := time.Now()
		w.update()
		updates = append(updates, ms(time.Since(t0)))
	}

	rss0 := rssMB(b, m.cmd.Process.Pid)
	gr0 := goroutines(b, eps[0])
	results := make(chan time.Time, watchers)
	wctx, wcancel := context.WithCancel(b.Context())
	var watchWG sync.WaitGroup
	defer func() {
		wcancel()
		watchWG.Wait()
	}()
	for range watchers {
		wc := connectTest(b, eps)
		wch := wc.cli.Watch(wctx, wc.exportsPrefix(), clientv3.WithPrefix())
		watchWG.Go(func() {
			for wr := range wch {
				if len(wr.Events) > 0 {
					results <- time.Now()
				}
			}
		})
	}
	// A watch is in place once it delivers: publish until every watcher
	// has seen something.
	var fanouts []float64
	round := func(version string) (time.Duration, bool) {
		t0 := time.Now()
		if err := c.Publish(b.Context(), "h00000", scaleExports("h00000", version)); err != nil {
			b.Fatal(err)
		}
		got := 0
		timeout := time.After(30 * time.Second)
		for got < watchers {
			select {
			case <-results:
				got++
			case <-timeout:
				return 0, false
			}
		}
		return time.Since(t0), true
	}
	if _, ok := round(" warm-up"); !ok {
		b.Fatalf("not every watcher received the first publish within 30 s")
	}
	rss1 := rssMB(b, m.cmd.Process.Pid)
	gr1 := goroutines(b, eps[0])
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		d, ok := round(" v" + strconv.Itoa(i))
		if !ok {
			b.Fatalf("publish %d did not reach every watcher within 30 s", i)
		}
		fanouts = append(fanouts, ms(d))
	}
	b.StopTimer()

	// Many collectors reading everything at once.
	herd := make([]*Client, 100)
	for i := range herd {
		herd[i] = connectTest(b, eps)
	}
	t0 := time.Now()
	for _, hc := range herd {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			defer cancel()
			resp, err := hc.cli.Get(rctx, hc.exportsPrefix(), clientv3.WithPrefix())
			if err == nil && len(resp.Kvs) != 2*hosts {
				err = fmt.Errorf("herd read %d exports, want %d", len(resp.Kvs), 2*hosts)
			}
			if err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	herdMs := ms(time.Since(t0))
	herdRSS := rssMB(b, m.cmd.Process.Pid)
	for _, hc := range herd {
		hc.Close()
	}

	b.ReportMetric(float64(size)/1024, "snapshot-KB")
	b.ReportMetric(median(loads), "load-ms")
	b.ReportMetric(median(updates), "update-ms")
	b.ReportMetric(median(fanouts), "fanout-ms")
	b.ReportMetric(herdMs, "herd-ms")
	b.ReportMetric(herdRSS, "herd-member-MB")
	b.ReportMetric((gr1-gr0)/float64(watchers), "watch-goroutines")
	b.ReportMetric(rss0, "member-MB")
	b.ReportMetric((rss1-rss0)*1024/float64(watchers), "watch-KB")
}

// goroutines reads the member's go_goroutines from its /metrics.
func goroutines(tb testing.TB, endpoint string) float64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		tb.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("no go_goroutines in %s/metrics", endpoint)
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rssMB is the resident memory of process pid.
func rssMB(tb testing.TB, pid int) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Rss:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("no Rss in smaps_rollup of %d", pid)
	return 0
}
