package user

import (
	"os/exec"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// BenchmarkDriftRepair measures, inside a test host, how long a user
// changed behind the resource's back (usermod -s) takes to be repaired:
// from usermod's exit to the end of the CheckApply that put the shell
// back, through inotify on /etc/passwd, the resource's check and a
// usermod of its own. repair-ms is the mean.
func BenchmarkDriftRepair(b *testing.B) {
	if !testhost.InHost(b, testhost.Options{}) {
		return
	}
	r := &User{Shell: "/bin/bash", Comment: "bench"}
	r.SetName("mgmt-bench")
	if err := r.Validate(); err != nil {
		b.Fatal(err)
	}
	if err := r.Init(restest.Env(b, "user")); err != nil {
		b.Fatal(err)
	}
	repaired := make(chan error, 1)
	restest.Loop(b, r, func(changed bool, err error) {
		if changed || err != nil {
			repaired <- err
		}
	})
	if err := <-repaired; err != nil { // the first check creates the user
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		if out, err := exec.Command("usermod", "-s", "/bin/sh", "mgmt-bench").CombinedOutput(); err != nil {
			b.Fatalf("usermod: %v: %s", err, out)
		}
		t0 := time.Now()
		select {
		case err := <-repaired:
			if err != nil {
				b.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			b.Fatal("the drift was not repaired within 10 s")
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "repair-ms")
}
