package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCollectPuts: another host puts 2,000 exports, one key at a
// time, and the agent collects them all; the CPU the whole process used
// from the first put until the last file is written is reported as
// cpu-s/op (issue 12, item 8: 61 s before rebuilds were coalesced).
//
//	go test -run '^$' -bench CollectPuts -benchtime 1x ./agent/
func BenchmarkCollectPuts(b *testing.B) {
	const puts = 2000
	for b.Loop() {
		b.StopTimer()
		base := b.TempDir()
		dir := filepath.Join(base, "collected")
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		g := filepath.Join(base, "g.yaml")
		writeFile(b, g, collectGraph(dir))
		cc := clusterCfg(b)
		r := startRun(b, Config{File: g, Cluster: cc})
		cli := etcdClient(b, r.client)
		b.StartTimer()
		cpu0, wall0 := cpuTime(b), time.Now()
		for i := range puts {
			putExport(b, cli, "peer", fmt.Sprintf("f%d", i), fmt.Sprintf("/x/f%d", i), "x")
		}
		waitFor(b, 10*time.Minute, "every collected file", func() bool { return countDir(dir) == puts })
		cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
		b.StopTimer()
		b.ReportMetric(cpu.Seconds(), "cpu-s/op")
		b.ReportMetric(wall.Seconds(), "wall-s/op")
		r.stop(b)
		b.StartTimer()
	}
}
