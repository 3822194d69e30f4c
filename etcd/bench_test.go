package etcd

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPublishToWatch measures the time from the start of a Publish
// on one client until the other clients' WatchExports deliver the new set:
// p50-ms is the median over every (publish, receiver) pair, all-p50-ms the
// median time until every receiver had it. One op is one such round.
func BenchmarkPublishToWatch(b *testing.B) {
	for _, tc := range []struct{ members, clients int }{
		{1, 3}, {1, 10}, {3, 3}, {3, 10},
	} {
		b.Run(fmt.Sprintf("members=%d/clients=%d", tc.members, tc.clients), func(b *testing.B) {
			benchPublishToWatch(b, tc.members, tc.clients)
		})
	}
}

func benchPublishToWatch(b *testing.B, members, clients int) {
	var eps []string
	if members == 1 {
		eps = startTestServer(b, testServerConfig(b, "m1")).Endpoints()
	} else {
		for _, s := range startCluster(b, clusterConfigs(b, members)) {
			eps = append(eps, s.Endpoints()...)
		}
	}
	type seen struct {
		version int
		at      time.Time
	}
	results := make(chan seen, 1024)
	var cs []*Client
	for i := range clients {
		c := connectTest(b, eps[i%len(eps):i%len(eps)+1])
		cs = append(cs, c)
		if i == 0 {
			continue
		}
		ch, err := c.WatchExports(b.Context(), fmt.Sprintf("h%d", i), []string{"file"})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for snap := range ch {
				for _, e := range snap {
					if e.Name == "f1" {
						v, _ := strconv.Atoi(string(e.Params))
						results <- seen{v, time.Now()}
					}
				}
			}
		}()
	}
	receivers := clients - 1
	var each, all []float64
	version := 0
	b.ResetTimer()
	for b.Loop() {
		version++
		p := []byte(strconv.Itoa(version))
		start := time.Now()
		if err := cs[0].Publish(b.Context(), "h0", []Export{{Kind: "file", Name: "f1", Params: p}, {Kind: "file", Name: "f2", Params: p}}); err != nil {
			b.Fatal(err)
		}
		got := 0
		timeout := time.After(10 * time.Second)
		for got < receivers {
			select {
			case r := <-results:
				if r.version != version {
					continue // a late copy of an earlier version
				}
				got++
				d := r.at.Sub(start)
				each = append(each, float64(d.Microseconds())/1000)
				if got == receivers {
					all = append(all, float64(d.Microseconds())/1000)
				}
			case <-timeout:
				b.Fatalf("version %d reached %d of %d receivers in 10s", version, got, receivers)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(median(each), "p50-ms")
	b.ReportMetric(median(all), "all-p50-ms")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkServerStartStop measures starting a one-member server until it
// is ready (start-ms) and stopping it (stop-ms), a fresh data directory
// each time.
func BenchmarkServerStartStop(b *testing.B) {
	var starts, stops []float64
	for b.Loop() {
		cfg := testServerConfig(b, "a")
		t0 := time.Now()
		s, err := StartServer(b.Context(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		s.Stop()
		starts = append(starts, float64(t1.Sub(t0).Microseconds())/1000)
		stops = append(stops, float64(time.Since(t1).Microseconds())/1000)
	}
	b.ReportMetric(median(starts), "start-ms")
	b.ReportMetric(median(stops), "stop-ms")
}
