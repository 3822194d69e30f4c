package pkg

import (
	"context"
	"errors"
	"os/exec"
	"slices"
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
