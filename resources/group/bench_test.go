package group

import (
	"os/exec"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// BenchmarkDriftRepair measures, inside a test host, how long a groupmod
// -g behind the resource's back takes to be repaired: from groupmod's exit
// to the end of the CheckApply that put the gid back. repair-ms is the
// mean.
func BenchmarkDriftRepair(b *testing.B) {
	if !testhost.InHost(b, testhost.Options{}) {
		return
	}
	r := &Group{GID: ptr(uint32(4600))}
	r.SetName("mgmt-bench")
	if err := r.Validate(); err != nil {
		b.Fatal(err)
	}
	repaired := make(chan error, 1)
	restest.Loop(b, r, func(changed bool, err error) {
		if changed || err != nil {
			repaired <- err
		}
	})
	if err := <-repaired; err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for b.Loop() {
		if out, err := exec.Command("groupmod", "-g", "4601", "mgmt-bench").CombinedOutput(); err != nil {
			b.Fatalf("groupmod: %v: %s", err, out)
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
