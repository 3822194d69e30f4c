package sysctl

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		res  Sysctl
		want string
	}{
		{Sysctl{Value: "1"}, "name: \"\" is invalid"},
		{Sysctl{Name: "net/../kernel", Value: "1"}, "is invalid: want a parameter"},
		{Sysctl{Name: "net.ipv4.ip_forward"}, "value: \"\" is invalid"},
		{Sysctl{Name: "net.ipv4.ip_forward", Value: "1\n2"}, "value:"},
		{Sysctl{Name: "net.ipv4.ip_forward", Value: "1", File: "/x"}, "needs persist: true"},
		{Sysctl{Name: "net.ipv4.ip_forward", Value: "1", Persist: true, File: "rel"}, "want an absolute file path"},
		{Sysctl{Name: "net.ipv4.ip_forward", Value: "1", Interval: 0.001}, "interval: 0.001 is invalid"},
	} {
		if err := c.res.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.res, err, c.want)
		}
	}
	r := &Sysctl{Value: "1", Persist: true}
	r.SetName("net/ipv4/ip_forward")
	must(t, r.Validate())
	if r.procPath() != "/proc/sys/net/ipv4/ip_forward" || r.persistPath() != "/etc/sysctl.d/90-mgmt-net.ipv4.ip_forward.conf" {
		t.Errorf("paths %s, %s", r.procPath(), r.persistPath())
	}
}

// The test host whose network namespace the tests of this package write
// sysctls in: the parent test boots it and runs the test binary again with
// only its network namespace switched to the host's (nsenter --net). Every
// value written is a net.* one of that namespace: never the machine's.
const (
	childEnv  = "MGMT_SYSCTL_CHILD_NETNS" // the namespace (readlink form) the child must be in
	parentEnv = "MGMT_SYSCTL_PARENT_NETNS"
)

func netns(t testing.TB, pid string) string {
	t.Helper()
	l, err := os.Readlink("/proc/" + pid + "/ns/net")
	must(t, err)
	return l
}

// inHostNetns reports whether this process is the child; a child not in
// the host's namespace, or still in its parent's, stops at once.
func inHostNetns(t testing.TB) bool {
	want := os.Getenv(childEnv)
	if want == "" {
		return false
	}
	if got := netns(t, "self"); got != want || got == os.Getenv(parentEnv) {
		t.Fatalf("refusing to write sysctls: in network namespace %s, want the test host's %s (parent's %s)", got, want, os.Getenv(parentEnv))
	}
	return true
}

// runInHostNetns boots a test host and runs this test binary again with
// args inside the host's network namespace, returning its output.
func runInHostNetns(t testing.TB, args ...string) string {
	t.Helper()
	testhost.RequireTools(t, "nsenter")
	h := testhost.StartT(t, testhost.Options{})
	ns := "/proc/" + strconv.Itoa(h.PID()) + "/ns/net"
	hostNS, err := os.Readlink(ns)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns, "--", os.Args[0], "-test.count=1", "-test.v"}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"="+hostNS, parentEnv+"="+netns(t, "self"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test in the host's network namespace failed: %v\n%s", err, out)
	}
	return string(out)
}

// The parameters the tests manage: per network namespace.
const (
	vectorKey = "net.ipv4.ip_local_port_range" // two numbers, tab-separated by the kernel
	scalarKey = "net.ipv4.tcp_fin_timeout"
)

func readProc(t testing.TB, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")))
	must(t, err)
	return string(b)
}

func writeProc(t testing.TB, key, v string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/")), []byte(v), 0))
}

// TestConformance: the shared suite in a test host's network namespace on
// net.ipv4.ip_local_port_range, persisted to a file: a value written from
// outside (found by polling) and a removed persist file (found by inotify)
// are repaired.
func TestConformance(t *testing.T) {
	if !inHostNetns(t) {
		out := runInHostNetns(t, "-test.run=^TestConformance$")
		t.Logf("in the host's network namespace:\n%s", out)
		if !strings.Contains(out, "--- PASS: TestConformance") {
			t.Fatalf("the suite did not pass in the host's namespace:\n%s", out)
		}
		return
	}
	persist := filepath.Join(t.TempDir(), "60-ports.conf")
	restest.Run(t, restest.Case{
		Kind: "sysctl",
		Res: func(t *testing.T) engine.Res {
			r := &Sysctl{Value: "20000   30000", Persist: true, File: persist, Interval: 0.05}
			r.SetName(vectorKey)
			return r
		},
		State: func(t *testing.T) string {
			b, _ := os.ReadFile(persist)
			return readProc(t, vectorKey) + "|" + string(b)
		},
		Drifts: []restest.Drift{
			{Name: "value written", Do: func(t *testing.T) { writeProc(t, vectorKey, "32768 60999") }},
			{Name: "persist file removed", Do: func(t *testing.T) { must(t, os.Remove(persist)) }},
		},
	})
}

// TestInvalidValue: a value the kernel refuses (or silently changes) is an
// error naming the parameter, not a change reported forever.
func TestInvalidValue(t *testing.T) {
	if !inHostNetns(t) {
		out := runInHostNetns(t, "-test.run=^TestInvalidValue$")
		if !strings.Contains(out, "--- PASS: TestInvalidValue") {
			t.Fatalf("the test did not pass in the host's namespace:\n%s", out)
		}
		return
	}
	r := &Sysctl{Name: scalarKey, Value: "not-a-number"}
	must(t, r.Validate())
	_, err := r.CheckApply(t.Context(), true)
	if err == nil || !strings.Contains(err.Error(), scalarKey) {
		t.Fatalf("CheckApply: %v, want an error naming %s", err, scalarKey)
	}
}

// BenchmarkRepairLatency: net.ipv4.tcp_fin_timeout changed from outside,
// until the watching loop (interval 50 ms) has written it back; in a test
// host's network namespace.
func BenchmarkRepairLatency(b *testing.B) {
	if !inHostNetns(b) {
		out := runInHostNetns(b, "-test.run=^$", "-test.bench=^BenchmarkRepairLatency$", "-test.benchtime="+strconv.Itoa(max(b.N, 20))+"x")
		for sc := bufio.NewScanner(strings.NewReader(out)); sc.Scan(); {
			f := strings.Fields(sc.Text())
			for i := 1; i < len(f); i++ {
				if f[i] == "p50-ms" || f[i] == "p99-ms" {
					v, err := strconv.ParseFloat(f[i-1], 64)
					must(b, err)
					b.ReportMetric(v, f[i])
				}
			}
		}
		if !bytes.Contains([]byte(out), []byte("p50-ms")) {
			b.Fatalf("no latency from the host's namespace:\n%s", out)
		}
		return
	}
	r := &Sysctl{Name: scalarKey, Value: "33", Interval: 0.05}
	must(b, r.Validate())
	repaired := make(chan time.Time, 16)
	restest.Loop(b, r, func(changed bool, err error) {
		if err != nil {
			b.Error(err)
		}
		if changed {
			repaired <- time.Now()
		}
	})
	<-repaired
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		writeProc(b, scalarKey, fmt.Sprint(40+i%10))
		at := time.Now()
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
}
