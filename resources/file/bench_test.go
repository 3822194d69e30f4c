package file

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
)

// sizes are the fleets of the benchmarks: files and the directories they
// are spread over.

var sizes = []struct{ files, dirs int }{{1000, 10}, {10000, 100}}

// workers is how many CheckApply run at once, as the engine runs
// independent vertices in parallel.
const workers = 16

// BenchmarkFirstApply creates every file: content written to a temporary
// file, synced, renamed, the directory synced.
func BenchmarkFirstApply(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprint(sz.files), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				f := newFleet(b, sz.files, sz.dirs)
				b.StartTimer()
				if changed := f.checkAll(b, true, workers); changed != sz.files {
					b.Fatalf("%d changes, want %d", changed, sz.files)
				}
			}
		})
	}
}

// BenchmarkCheck is a one-shot run with nothing to do: every file read and
// compared.
func BenchmarkCheck(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprint(sz.files), func(b *testing.B) {
			f := newFleet(b, sz.files, sz.dirs)
			f.create(b)
			for b.Loop() {
				if changed := f.checkAll(b, true, workers); changed != 0 {
					b.Fatalf("%d changes, want none", changed)
				}
			}
		})
	}
}

// edit overwrites a managed file in place with as many wrong bytes: one
// write, one inotify event.
func edit(tb testing.TB, p string) {
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = fh.WriteAt([]byte("EDITED"), 0)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkRepair10 edits 10 files and repairs them: "oneshot" checks
// every file (a run from cron), "watching" lets each resource's Watch see
// its own edit and repair only that file.
func BenchmarkRepair10(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("oneshot/%d", sz.files), func(b *testing.B) {
			f := newFleet(b, sz.files, sz.dirs)
			f.create(b)
			for b.Loop() {
				b.StopTimer()
				for _, i := range rand.Perm(sz.files)[:10] {
					edit(b, f.res[i].s.path)
				}
				b.StartTimer()
				if changed := f.checkAll(b, true, workers); changed != 10 {
					b.Fatalf("%d changes, want 10", changed)
				}
			}
		})
		b.Run(fmt.Sprintf("watching/%d", sz.files), func(b *testing.B) {
			f := newFleet(b, sz.files, sz.dirs)
			f.create(b)
			repaired := make(chan int, sz.files)
			for i, r := range f.res {
				restest.Loop(b, r, func(changed bool, err error) {
					if err != nil {
						b.Error(err)
					}
					if changed {
						repaired <- i
					}
				})
			}
			for b.Loop() {
				for _, i := range rand.Perm(sz.files)[:10] {
					edit(b, f.res[i].s.path)
				}
				for range 10 {
					select {
					case <-repaired:
					case <-time.After(restest.DefaultTimeout):
						b.Fatal("edits not repaired")
					}
				}
			}
			reportMemory(b)
		})
	}
}

// BenchmarkRepairLatency edits one managed file at a time while every
// resource watches, and times until its CheckApply has restored it. One
// operation is 100 such repairs, one after the other; the median and 99th
// percentile are over all of them.
func BenchmarkRepairLatency(b *testing.B) {
	const perOp = 100
	for _, sz := range sizes {
		b.Run(fmt.Sprint(sz.files), func(b *testing.B) {
			f := newFleet(b, sz.files, sz.dirs)
			f.create(b)
			type repair struct {
				i  int
				at time.Time
			}
			repaired := make(chan repair, sz.files)
			for i, r := range f.res {
				restest.Loop(b, r, func(changed bool, err error) {
					if err != nil {
						b.Error(err)
					}
					if changed {
						repaired <- repair{i, time.Now()}
					}
				})
			}
			var lat []time.Duration
			for b.Loop() {
				for range perOp {
					i := rand.N(sz.files)
					edit(b, f.res[i].s.path)
					edited := time.Now()
					for done := false; !done; {
						select {
						case r := <-repaired:
							if r.i == i {
								lat = append(lat, r.at.Sub(edited))
								done = true
							}
						case <-time.After(restest.DefaultTimeout):
							b.Fatal("edit not repaired")
						}
					}
				}
			}
			slices.Sort(lat)
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// reportMemory reports the memory the process uses with the fleet watching.
func reportMemory(b *testing.B) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.Sys)/(1<<20), "MB-sys")
}

// BenchmarkReporting measures what reporting changes costs the check of
// 10,000 files: each iteration checks them without a recorder and with one
// (a recorder and its context per resource, made once, as the engine makes them per vertex), the two in
// turn (neither always first), and the median of the iterations' ratios
// is reported: on a shared machine one slow pass would sway a mean.
// "check": nothing to do (the steady state); "noop-drifted": every file's
// content differs, a noop check, each change reported with its diff.
func BenchmarkReporting(b *testing.B) {
	const n, dirs = 10000, 100
	for _, mode := range []string{"check", "noop-drifted"} {
		b.Run(mode+"/10000", func(b *testing.B) {
			f := newFleet(b, n, dirs)
			f.create(b)
			apply, want := true, 0
			if mode == "noop-drifted" {
				for _, r := range f.res {
					edit(b, r.s.path)
				}
				apply, want = false, n
			}
			var ratios []float64
			for i := 0; b.Loop(); i++ {
				var took [2]time.Duration // without, with
				for j := range 2 {
					record := (i+j)%2 == 1
					f.record = record
					t0 := time.Now()
					if changed := f.checkAll(b, apply, workers); changed != want {
						b.Fatalf("%d changes, want %d", changed, want)
					}
					if record {
						took[1] = time.Since(t0)
					} else {
						took[0] = time.Since(t0)
					}
				}
				ratios = append(ratios, float64(took[1])/float64(took[0]))
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[len(ratios)/2], "with/without")
			b.ReportMetric(0, "ns/op")
		})
	}
}
