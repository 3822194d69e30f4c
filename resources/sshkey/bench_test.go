package sshkey

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// BenchmarkDriftRepair measures, inside a test host, how long an
// authorized_keys emptied behind the resource's back takes to be
// repaired: from the write to the end of the CheckApply that put the key
// back. repair-ms is the mean.
func BenchmarkDriftRepair(b *testing.B) {
	if !testhost.InHost(b, testhost.Options{}) {
		return
	}
	if out, err := exec.Command("useradd", "-m", "mgmt-bench").CombinedOutput(); err != nil {
		b.Fatalf("useradd: %v: %s", err, out)
	}
	r := newKey("mgmt-bench", keyA)
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
		if err := os.WriteFile("/home/mgmt-bench/.ssh/authorized_keys", nil, 0o600); err != nil {
			b.Fatal(err)
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
