package multihost

import (
	"fmt"
	"os"
	"testing"
	"time"

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
// members=3 agents=3 the last agent joins as a member: the time includes
// adding it as a learner, starting its server and promoting it.
func BenchmarkConverge(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	for _, tc := range []struct{ members, agents int }{
		{1, 3}, {3, 3}, {1, 10}, {3, 10},
	} {
		b.Run(fmt.Sprintf("members=%d/agents=%d", tc.members, tc.agents), func(b *testing.B) {
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
				if last < tc.members {
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
// (change-ms), and, once converged, the members' memory (member-rss-MB,
// the largest; member-pss-MB) and a client's (client-rss-MB, mean), and
// the CPU time all the agents spent converging (cpu-s).
func BenchmarkClients(b *testing.B) {
	if testing.Short() {
		b.Skip("starts mgmt agents with etcd")
	}
	bin := testhost.GoBuild(b, testhost.MgmtPackage)
	const members = 3
	for _, clients := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d/clients=%d", members, clients), func(b *testing.B) {
			n := members + clients
			var lasts, firsts, changes, memRSS, memPSS, cliRSS, cpus []float64
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
				if err := os.WriteFile(m.graph, []byte(hostGraph(m.dir, m.name, extra)), 0o644); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				at = f.wait(n, map[string][]string{m.name: {"f5" + m.name}}, time.Minute)
				changes = append(changes, ms(at.Sub(t1)))
				f.stop()
				b.StartTimer()
			}
			b.ReportMetric(median(lasts), "last-ms")
			b.ReportMetric(median(firsts), "first-ms")
			b.ReportMetric(median(changes), "change-ms")
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
