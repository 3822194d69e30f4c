package multihost

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// joinSettle is how long after a membership change etcd refuses the next
// one: its leader must have been connected to a quorum for 5 s
// (--strict-reconfig-check). Nothing outside the leader shows when that
// time is up, so a benchmark that wants to time a join alone waits it out.
const joinSettle = 5*time.Second + 500*time.Millisecond

// BenchmarkConverge measures, for the demo's graph on every agent, the
// time from starting the last agent until every agent holds every file
// (last-ms): the last agent's own and collected files, and its exports at
// every other agent. The other agents run and have converged before. The
// first `members` agents run etcd members (the first starts the cluster,
// the others join it); the rest are clients of them (--no-server). With
// members=3 agents=3 the last agent is to join as a member; it exchanges
// through its seeds while its server joins in the background, so the time
// does not include the join. It starts 5.5 s after the member before it
// was started, except when hurried: then it starts as soon as the others
// have converged, as in the demo, and etcd makes its join (not its
// exchange) wait until its leader has been connected to both other members
// for 5 s.
func BenchmarkConverge(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	for _, tc := range []struct {
		members, agents int
		hurried         bool // the last member joins right after the one before
	}{
		{1, 3, false}, {3, 3, false}, {3, 3, true}, {1, 10, false}, {3, 10, false},
	} {
		name := fmt.Sprintf("members=%d/agents=%d", tc.members, tc.agents)
		if tc.hurried {
			name += "/hurried"
		}
		b.Run(name, func(b *testing.B) {
			var lasts []float64
			for b.Loop() {
				b.StopTimer()
				f := newFleet(b, bin, tc.agents)
				last := tc.agents - 1
				var joined time.Time
				for i := range tc.members {
					if i == last {
						break
					}
					f.startMember(i)
					// The next member joins a running cluster.
					joined = f.wait(i+1, nil, time.Minute)
				}
				for i := tc.members; i < last; i++ {
					f.startClient(i)
				}
				f.wait(last, nil, time.Minute)
				if last < tc.members && !tc.hurried {
					time.Sleep(time.Until(joined.Add(joinSettle)))
				}
				b.StartTimer()
				t0 := time.Now()
				if last < tc.members {
					f.startMember(last)
				} else {
					f.startClient(last)
				}
				at := f.wait(tc.agents, nil, time.Minute)
				b.StopTimer()
				lasts = append(lasts, ms(at.Sub(t0)))
				f.stop()
				b.StartTimer()
			}
			b.ReportMetric(median(lasts), "last-ms")
		})
	}
}

// BenchmarkClients starts a three-member cluster of agents, then many
// client-only agents (--no-server) at once, all with the demo's graph. It
// reports the time from starting the last client until all of them, and
// the members, hold every file (last-ms; first-ms from starting the first
// client), the time for one member's new export to reach every other agent
// (change-ms) and the CPU time that cost each agent on average
// (change-cpu-ms: the exporter's publish and every collector's rebuild,
// divided among the collectors), and, once converged, the members' memory
// (member-rss-MB, the largest; member-pss-MB) and a client's
// (client-rss-MB, mean), and the CPU time all the agents spent converging
// (cpu-s).
func BenchmarkClients(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	const members = 3
	for _, clients := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d/clients=%d", members, clients), func(b *testing.B) {
			n := members + clients
			var lasts, firsts, changes, changeCPUs, memRSS, memPSS, cliRSS, cpus []float64
			for b.Loop() {
				b.StopTimer()
				f := newFleet(b, bin, n)
				for i := range members {
					f.startMember(i)
					f.wait(i+1, nil, time.Minute)
				}
				cpu0 := f.cpu(b)
				b.StartTimer()
				t0 := time.Now()
				for i := members; i < n; i++ {
					f.startClient(i)
				}
				tLast := time.Now()
				at := f.wait(n, nil, 3*time.Minute)
				b.StopTimer()
				lasts = append(lasts, ms(at.Sub(tLast)))
				firsts = append(firsts, ms(at.Sub(t0)))
				cpus = append(cpus, (f.cpu(b) - cpu0).Seconds())

				var rss, pss, crss float64
				for i, a := range f.agents {
					u, err := a.usage()
					if err != nil {
						b.Fatal(err)
					}
					if i < members {
						rss, pss = max(rss, u.rssMB), max(pss, u.pssMB)
					} else {
						crss += u.rssMB / float64(clients)
					}
				}
				memRSS, memPSS, cliRSS = append(memRSS, rss), append(memPSS, pss), append(cliRSS, crss)

				// One member exports one more file.
				m := f.agents[0]
				extra := fmt.Sprintf("  - name: \"@@file5%s\"\n    path: %s/f5%s\n    content: \"new\\n\"\n", m.name, m.dir, m.name)
				cpu1 := f.cpu(b)
				t1 := time.Now()
				if err := replaceFile(m.graph, hostGraph(m.dir, m.name, extra)); err != nil {
					b.Fatal(err)
				}
				at = f.wait(n, map[string][]string{m.name: {"f5" + m.name}}, time.Minute)
				changes = append(changes, ms(at.Sub(t1)))
				changeCPUs = append(changeCPUs, ms(f.cpu(b)-cpu1)/float64(n-1))
				f.stop()
				b.StartTimer()
			}
			b.ReportMetric(median(lasts), "last-ms")
			b.ReportMetric(median(firsts), "first-ms")
			b.ReportMetric(median(changes), "change-ms")
			b.ReportMetric(median(changeCPUs), "change-cpu-ms")
			b.ReportMetric(median(memRSS), "member-rss-MB")
			b.ReportMetric(median(memPSS), "member-pss-MB")
			b.ReportMetric(median(cliRSS), "client-rss-MB")
			b.ReportMetric(median(cpus), "cpu-s")
		})
	}
}

// cpu is the CPU time the fleet's running agents have used so far.
func (f *fleet) cpu(tb testing.TB) time.Duration {
	var total time.Duration
	for _, a := range f.agents {
		if a.cmd == nil {
			continue
		}
		u, err := a.usage()
		if err != nil {
			tb.Fatal(err)
		}
		total += u.cpu
	}
	return total
}

// BenchmarkCollector measures one agent collecting the exports of many
// hosts, as a load balancer collecting its backends would: `hosts` hosts
// have published two exported files each (written straight into etcd by
// the benchmark, the hosts themselves do not run), then one client-only
// agent with the demo's graph starts. It reports the time from its start
// until it holds all 2×hosts files (first-ms), its memory then (rss-MB),
// and for one more export of one host, the time until the agent has
// written it (change-ms) and the CPU time that took it (change-cpu-ms:
// reading the change, rebuilding the snapshot, decoding every collected
// resource and swapping the graph).
func BenchmarkCollector(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	for _, hosts := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", hosts), func(b *testing.B) {
			var firsts, rsss, changes, changeCPUs []float64
			for b.Loop() {
				b.StopTimer()
				f := newFleet(b, bin, 2)
				// Agent 0 runs the member; it does not collect.
				m := f.agents[0]
				g := hostGraph(m.dir, m.name, "")
				g, _, _ = strings.Cut(g, "collect:")
				if err := os.WriteFile(m.graph, []byte(g), 0o644); err != nil {
					b.Fatal(err)
				}
				f.startMember(0)
				c, err := etcd.Connect(b.Context(), etcd.ClientConfig{Endpoints: f.seeds})
				if err != nil {
					b.Fatal(err)
				}
				publishHosts(b, c, hosts, "")
				col := f.agents[1]
				want := []string{"f1" + col.name, "f2" + col.name, "f3" + col.name, "f4" + col.name, "f3" + m.name, "f4" + m.name}
				for h := range hosts {
					want = append(want, fmt.Sprintf("f3x%05d", h), fmt.Sprintf("f4x%05d", h))
				}
				slices.Sort(want)
				b.StartTimer()
				t0 := time.Now()
				f.startClient(1)
				at, err := f.log.waitHolds(map[string][]string{col.dir: want}, 5*time.Minute)
				b.StopTimer()
				if err != nil {
					b.Fatalf("collector: %v%s", err, f.exitedAgents())
				}
				firsts = append(firsts, ms(at.Sub(t0)))
				u, err := col.usage()
				if err != nil {
					b.Fatal(err)
				}
				rsss = append(rsss, u.rssMB)

				// One host exports a fifth file.
				host := "x00000"
				ex := append(hostExports(host, ""), etcd.Export{Kind: "file", Name: "file5" + host,
					Params: fmt.Appendf(nil, "path: /tmp/mgmt%s/f5%s\ncontent: \"new\\n\"\n", host, host)})
				want = append(want, "f5"+host)
				slices.Sort(want)
				t1 := time.Now()
				if err := c.Publish(b.Context(), host, ex); err != nil {
					b.Fatal(err)
				}
				at, err = f.log.waitHolds(map[string][]string{col.dir: want}, time.Minute)
				if err != nil {
					b.Fatalf("collector after a change: %v%s", err, f.exitedAgents())
				}
				changes = append(changes, ms(at.Sub(t1)))
				u2, err := col.usage()
				if err != nil {
					b.Fatal(err)
				}
				changeCPUs = append(changeCPUs, ms(u2.cpu-u.cpu))
				c.Close()
				f.stop()
				b.StartTimer()
			}
			b.ReportMetric(median(firsts), "first-ms")
			b.ReportMetric(median(rsss), "rss-MB")
			b.ReportMetric(median(changes), "change-ms")
			b.ReportMetric(median(changeCPUs), "change-cpu-ms")
		})
	}
}

// replaceFile replaces a graph file in one rename, so that its agent never
// reads half of it.
func replaceFile(name, text string) error {
	if err := os.WriteFile(name+".new", []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(name+".new", name)
}

// hostExports are the demo's two exported files of a host that does not
// run: what its agent would publish.
func hostExports(host, version string) []etcd.Export {
	var out []etcd.Export
	for _, n := range []int{3, 4} {
		out = append(out, etcd.Export{Kind: "file", Name: fmt.Sprintf("file%d%s", n, host),
			Params: fmt.Appendf(nil, "path: /tmp/mgmt%s/f%d%s\ncontent: \"i am f%d of %s%s\\n\"\n", host, n, host, n, host, version)})
	}
	return out
}

// publishHosts publishes the exports of hosts x00000... through c, a few
// at a time.
func publishHosts(tb testing.TB, c *etcd.Client, hosts int, version string) {
	tb.Helper()
	const publishers = 16
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Go(func() {
			for h := p; h < hosts; h += publishers {
				host := fmt.Sprintf("x%05d", h)
				if err := c.Publish(tb.Context(), host, hostExports(host, version)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// BenchmarkDeploy measures a deploy reaching a fleet: `members` agents run
// the etcd members (a graph of one noop, nothing else), and `agents`
// client-only agents run `mgmt run --from-cluster --no-server`. Each
// deploy writes one new file on every agent (d1, d2, ...: the graph is
// templated on the hostname); the time from the deploy stored (Store.Put
// returned: its transaction committed) until every agent has written its
// file, seen by inotify, is one sample. After a first deploy that every
// agent must take (not timed), `deploysPerRun` deploys are timed one after
// the other. It reports the median (p50-ms), the 99th percentile by
// nearest rank (p99-ms: with fewer than 100 samples, the slowest) and the
// slowest (max-ms).
//
// The model it replaces, a git pull from cron every minute, converges a
// push 30 s later on average and 60 s in the worst case (uniform over the
// minute, plus the run itself): arithmetic, not measured here.
func BenchmarkDeploy(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	const deploysPerRun = 10
	for _, tc := range []struct{ members, agents int }{
		{1, 3}, {1, 10}, {1, 50}, {3, 3}, {3, 10}, {3, 50},
	} {
		b.Run(fmt.Sprintf("members=%d/agents=%d", tc.members, tc.agents), func(b *testing.B) {
			var samples []float64
			for b.Loop() {
				b.StopTimer()
				samples = append(samples, deployRun(b, bin, tc.members, tc.agents, deploysPerRun)...)
				b.StartTimer()
			}
			b.ReportMetric(median(samples), "p50-ms")
			b.ReportMetric(percentile(samples, 99), "p99-ms")
			b.ReportMetric(slices.Max(samples), "max-ms")
		})
	}
}

// deployRun starts a fleet and returns the times of n deploys to reach
// all of its client agents, in ms.
func deployRun(b *testing.B, bin string, members, agents, n int) []float64 {
	b.Helper()
	f := newFleet(b, bin, members+agents)
	defer f.stop()
	for i := range members {
		m := f.agents[i]
		if err := os.WriteFile(m.graph, []byte("resources:\n  noop:\n  - name: member\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		f.startMember(i)
	}
	c, err := etcd.Connect(b.Context(), etcd.ClientConfig{Endpoints: f.seeds})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Every member voting before the clients start: no membership change
	// under the timings (a member joins 5 s after the one before).
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := c.Raw().MemberList(b.Context())
		voting := 0
		if err == nil {
			for _, m := range resp.Members {
				if m.Name != "" && !m.IsLearner {
					voting++
				}
			}
		}
		if voting == members {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d members voting after 2 min (%v)%s", voting, members, err, f.exitedAgents())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := members; i < members+agents; i++ {
		f.startFromCluster(i)
	}
	st := deploy.NewStore(c)
	src := b.TempDir()
	var marks []string
	var out []float64
	for k := range n + 1 {
		mark := fmt.Sprintf("d%03d", k)
		g := filepath.Join(src, "graph.yaml")
		graph := fmt.Sprintf("resources:\n  file:\n  - name: mark\n    path: %s/{{ .Hostname }}/files/%s\n    content: \"%s\\n\"\n", f.base, mark, mark)
		if err := os.WriteFile(g, []byte(graph), 0o644); err != nil {
			b.Fatal(err)
		}
		bundle, err := deploy.Bundle(deploy.BundleSpec{Graph: g})
		if err != nil {
			b.Fatal(err)
		}
		marks = append(marks, mark)
		want := map[string][]string{}
		for _, a := range f.agents[members:] {
			want[a.dir] = slices.Clone(marks)
		}
		if _, err := st.Put(b.Context(), bundle, deploy.PutOptions{Message: mark}); err != nil {
			b.Fatal(err)
		}
		stored := time.Now()
		limit := 30 * time.Second
		if k == 0 {
			limit = 3 * time.Minute // the agents are still starting
		}
		at, err := f.log.waitHolds(want, limit)
		if err != nil {
			b.Fatalf("deploy %s to %d agents: %v%s", mark, agents, err, f.exitedAgents())
		}
		if k > 0 {
			out = append(out, ms(at.Sub(stored)))
		}
	}
	return out
}

// percentile is the p-th percentile of xs by nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
