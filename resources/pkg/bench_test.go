package pkg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

var benchPkgs = []string{pkgA, pkgC, pkgSvc}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// timed runs f and returns how long it took, failing the benchmark on an
// error.
func timed(b *testing.B, f func() error) time.Duration {
	b.Helper()
	t0 := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

func pkcon(h *testhost.Host, args ...string) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := h.Run(ctx, append([]string{"pkcon", "--noninteractive", "--plain"}, args...)...)
		return err
	}
}

// BenchmarkInstallThree installs three packages of the local repository,
// side by side in each iteration, three ways: mgmt's grouped check (its
// Resolve, a Resolve under the free filter, one InstallPackages);
// `pkcon install a c svc` inside the host (the floor: PackageKit's own
// client, one transaction); and three `pkcon install` runs, one package
// each (what ungrouped resources amount to). The packages are purged with
// dpkg, untimed, before each way. It reports the medians and the ratios.
func BenchmarkInstallThree(b *testing.B) {
	testhost.RequireTools(b, "pkcon")
	h := host(b)
	defer purge(b, h, benchPkgs...)
	var mgmt, one, each []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		purge(b, h, benchPkgs...)
		g := group(b, newRes(b, pkgA, ""), newRes(b, pkgC, ""), newRes(b, pkgSvc, ""))
		b.StartTimer()
		mgmt = append(mgmt, timed(b, func() error {
			_, err := g.CheckApply(context.Background(), true)
			return err
		}))
		b.StopTimer()
		purge(b, h, benchPkgs...)
		b.StartTimer()
		one = append(one, timed(b, pkcon(h, append([]string{"install"}, benchPkgs...)...)))
		b.StopTimer()
		purge(b, h, benchPkgs...)
		b.StartTimer()
		each = append(each, timed(b, func() error {
			for _, p := range benchPkgs {
				if err := pkcon(h, "install", p)(); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	b.StopTimer()
	m, o, e := median(mgmt), median(one), median(each)
	b.ReportMetric(ms(m), "mgmt-ms")
	b.ReportMetric(ms(o), "pkcon-one-ms")
	b.ReportMetric(ms(e), "pkcon-each-ms")
	b.ReportMetric(float64(m)/float64(o), "mgmt/pkcon-one")
	b.ReportMetric(float64(e)/float64(m), "pkcon-each/mgmt")
}

// BenchmarkCheckInstalled checks three installed packages with nothing to
// do: one-shot, as `mgmt run` starting up does it (a new bus connection and
// one Resolve); by a running agent whose Watch has seen nothing since its
// last check (no PackageKit call at all); and, for scale,
// `pkcon install` of the three, which finds them installed.
func BenchmarkCheckInstalled(b *testing.B) {
	testhost.RequireTools(b, "pkcon")
	h := host(b)
	aptInstall(b, h, benchPkgs...)
	defer purge(b, h, benchPkgs...)
	mk := func() *Pkg { return group(b, newRes(b, pkgA, ""), newRes(b, pkgC, ""), newRes(b, pkgSvc, "")) }
	check := func(g *Pkg) func() error {
		return func() error {
			changed, err := g.CheckApply(context.Background(), false)
			if err == nil && changed {
				b.Fatal("three installed packages: the check reports a change")
			}
			return err
		}
	}

	var oneShot, warm, pk []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := packagekit.CloseShared(); err != nil {
			b.Fatal(err)
		}
		g := mk()
		b.StartTimer()
		oneShot = append(oneShot, timed(b, check(g)))
	}
	// The running agent keeps its connection: started after the one-shot
	// checks, which close theirs.
	b.StopTimer()
	running := mk()
	restest.Loop(b, running, nil)
	wait.Until(b, 30*time.Second, func() bool { return !running.busy() }, func() string { return "the running check never settled" })
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		warm = append(warm, timed(b, check(running)))
	}
	// pkcon last: its transactions are events the running agent reacts to.
	for i := 0; i < b.N; i++ {
		pk = append(pk, timed(b, func() error {
			// pkcon exits 5 ("nothing useful was done") when all are
			// installed.
			var ee *exec.ExitError
			if err := pkcon(h, append([]string{"install"}, benchPkgs...)...)(); err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 5) {
				return err
			}
			return nil
		}))
	}
	b.StopTimer()
	b.ReportMetric(ms(median(oneShot)), "oneshot-ms")
	b.ReportMetric(float64(median(warm))/float64(time.Microsecond), "running-us")
	b.ReportMetric(ms(median(pk)), "pkcon-ms")
}

// baselineEnv names a second mgmt binary for BenchmarkRunInstallThree to
// run beside the one under test, in the same rounds (e.g. a build of the
// commit before a change).
const baselineEnv = "MGMT_BENCH_BASELINE_BINARY"

// inHost runs argv inside the host and returns how long it took there (the
// clock is read by the host's shell, so that entering the host is not
// counted); it fails the benchmark if the command fails.
func inHost(b *testing.B, h *testhost.Host, argv ...string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script := `s=$(date +%s%N); "$@" >/tmp/bench.out 2>&1; rc=$?; e=$(date +%s%N); echo $((e-s)); [ $rc = 0 ] || { cat /tmp/bench.out; exit $rc; }`
	out, err := h.Run(ctx, append([]string{"sh", "-c", script, "sh"}, argv...)...)
	if err != nil {
		b.Fatalf("%v: %v: %s", argv, err, out)
	}
	var ns int64
	if _, err := fmt.Sscan(string(out), &ns); err != nil {
		b.Fatalf("%v: %q: %v", argv, out, err)
	}
	return time.Duration(ns)
}

// BenchmarkRunInstallThree installs the three packages of
// BenchmarkInstallThree the way users do: `mgmt run --converged-timeout=0
// --no-watch` of a graph of three pkg resources (grouped: one vertex),
// against `pkcon install` of the same three, in interleaved rounds, the
// packages purged (untimed) before each run. With $MGMT_BENCH_BASELINE_BINARY
// it runs that mgmt too, in the same rounds. Each run is timed inside the
// host. It reports each tool's median and the medians of the per-round
// ratios to pkcon (and of the per-round difference to the baseline), and
// logs every round and the spread (min, quartiles, max).
func BenchmarkRunInstallThree(b *testing.B) {
	testhost.RequireTools(b, "pkcon")
	h := host(b)
	defer purge(b, h, benchPkgs...)
	type tool struct {
		name string
		argv []string
		ds   []time.Duration
	}
	graph := "graph: pkgs\nresources:\n  pkg:\n"
	for _, p := range benchPkgs {
		graph += "  - {name: " + p + ", allowunsupported: true}\n"
	}
	if err := h.WriteFile("/root/bench-pkgs.yaml", []byte(graph), 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(bin string) []string {
		return []string{bin, "run", "--file", "/root/bench-pkgs.yaml", "--converged-timeout=0", "--no-watch", "--prefix", "/root/bench-prefix"}
	}
	tools := []*tool{{name: "mgmt", argv: run(testhost.InstallMgmt(b, h))}}
	if base := os.Getenv(baselineEnv); base != "" {
		p, err := h.InstallBinary(base, "mgmt-baseline")
		if err != nil {
			b.Fatal(err)
		}
		tools = append(tools, &tool{name: "mgmt-baseline", argv: run(p)})
	}
	tools = append(tools, &tool{name: "pkcon", argv: append([]string{"pkcon", "--noninteractive", "--plain", "install"}, benchPkgs...)})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Rotate the order each round: no tool always runs first.
		for k := range tools {
			t := tools[(i+k)%len(tools)]
			b.StopTimer()
			purge(b, h, benchPkgs...)
			b.StartTimer()
			t.ds = append(t.ds, inHost(b, h, t.argv...))
			b.StopTimer()
			if got := status(b, h, benchPkgs...); strings.Count(got, " installed ") != len(benchPkgs) {
				b.Fatalf("%s: not installed:\n%s", t.name, got)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	for _, t := range tools {
		s := slices.Clone(t.ds)
		slices.Sort(s)
		q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))] }
		b.Logf("%s: %d runs, median %v, min %v, q1 %v, q3 %v, max %v; runs %v", t.name, len(s), median(s).Round(time.Millisecond),
			s[0].Round(time.Millisecond), q(0.25).Round(time.Millisecond), q(0.75).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), t.ds)
		b.ReportMetric(ms(median(s)), t.name+"-ms")
	}
	// Paired, round by round: the load of a shared machine moves all the
	// tools of one round alike.
	pkcon := tools[len(tools)-1].ds
	ratio := func(ds []time.Duration) float64 {
		rs := make([]float64, len(ds))
		for i := range ds {
			rs[i] = float64(ds[i]) / float64(pkcon[i])
		}
		slices.Sort(rs)
		b.Logf("per-round ratios to pkcon: %.2f", rs)
		return rs[len(rs)/2]
	}
	b.ReportMetric(ratio(tools[0].ds), "mgmt/pkcon")
	if len(tools) == 3 {
		b.ReportMetric(ratio(tools[1].ds), "mgmt-baseline/pkcon")
		diff := make([]time.Duration, len(pkcon))
		for i := range diff {
			diff[i] = tools[0].ds[i] - tools[1].ds[i]
		}
		slices.Sort(diff)
		b.Logf("per-round mgmt - mgmt-baseline: %v", diff)
		b.ReportMetric(ms(diff[len(diff)/2]), "mgmt-minus-baseline-ms")
	}
}
