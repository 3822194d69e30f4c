package cron

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

func newCron(name string, r *Cron) *Cron {
	r.SetName(name)
	return r
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		res  Cron
		want string
	}{
		{"a b", Cron{Calendar: "hourly", Command: "x"}, `name: "a b" is invalid`},
		{"x", Cron{Command: "x"}, "calendar: missing"},
		{"x", Cron{Calendar: "hourly"}, "command: missing"},
		{"x", Cron{Calendar: "hourly", Command: "a\nb"}, "contains a newline"},
		{"x", Cron{Calendar: "hourly", Command: "a", State: "gone"}, "want exists (the default) or absent"},
		{"x", Cron{Calendar: "hourly", Command: "a", User: "a b"}, `user: "a b" is invalid`},
		{"x", Cron{Calendar: "hourly", Command: "a", Accuracy: -1}, "accuracysec"},
	} {
		r := c.res
		r.SetName(c.name)
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want an error containing %q", c.name, c.res, err, c.want)
		}
	}
	must(t, newCron("gone", &Cron{State: "absent"}).Validate())
}

// TestUnits: the generated units, with a command whose %, $, quotes and
// backslashes systemd must pass through to the shell unchanged.
func TestUnits(t *testing.T) {
	r := newCron("backup", &Cron{Calendar: "*-*-* 03:00:00", Command: `echo "$HOME" 100% \o/`, User: "app", Persistent: true, Accuracy: 0.5})
	must(t, r.Validate())
	timer, service := r.files()
	for _, want := range []string{"OnCalendar=*-*-* 03:00:00\n", "Persistent=true\n", "AccuracySec=500ms\n", "Unit=mgmt-cron-backup.service\n", "WantedBy=timers.target\n"} {
		if !strings.Contains(string(timer), want) {
			t.Errorf("timer unit lacks %q:\n%s", want, timer)
		}
	}
	for _, want := range []string{"Type=oneshot\n", "User=app\n", `ExecStart=/bin/sh -c "echo \"$$HOME\" 100%% \\o/"` + "\n"} {
		if !strings.Contains(string(service), want) {
			t.Errorf("service unit lacks %q:\n%s", want, service)
		}
	}
}

func sh(t testing.TB, cmd string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

func systemctl(t testing.TB, args ...string) string {
	out, _ := exec.Command("systemctl", args...).Output() // is-active exits 3 when inactive
	return strings.TrimSpace(string(out))
}

// state: the timer's active and enabled states and the unit files' hashes.
func state(t *testing.T, name string) string {
	u := "mgmt-cron-" + name
	var s []string
	for _, f := range []string{u + ".timer", u + ".service"} {
		b, err := os.ReadFile(filepath.Join(unitDir, f))
		if err != nil {
			s = append(s, f+"=(missing)")
			continue
		}
		s = append(s, fmt.Sprintf("%s=%x", f, sha256.Sum256(b))[:len(f)+13])
	}
	return strings.Join(append(s, systemctl(t, "is-active", u+".timer"), systemctl(t, "is-enabled", u+".timer")), " ")
}

// waitLines waits until the file has at least n lines.
func waitLines(t testing.TB, p string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(p)
		lines := strings.Fields(string(b))
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines after %v, want %d", p, len(lines), within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConformance, inside a test host with its real systemd: the units are
// written, the timer enabled and started; a unit file edited, the timer
// stopped and disabled are each seen (inotify, PropertiesChanged) and
// repaired; the timer fires every 2 s and its command, run as nobody,
// writes a marker; absent removes it all.
func TestConformance(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	marker := "/tmp/cron-marker"
	r := newCron("tick", &Cron{Calendar: "*:*:0/2", Command: "date +%s.%N >> " + marker, User: "nobody", Accuracy: 0.01})
	u := "mgmt-cron-tick"
	restest.Run(t, restest.Case{
		Kind:  "cron",
		Res:   func(t *testing.T) engine.Res { return r },
		State: func(t *testing.T) string { return state(t, "tick") },
		Drifts: []restest.Drift{
			{Name: "timer unit edited", Do: func(t *testing.T) {
				sh(t, "sed -i 's/^OnCalendar=.*/OnCalendar=daily/' "+unitDir+"/"+u+".timer")
			}},
			{Name: "service unit removed", Do: func(t *testing.T) { sh(t, "rm "+unitDir+"/"+u+".service") }},
			{Name: "timer stopped", Do: func(t *testing.T) { sh(t, "systemctl stop "+u+".timer") }},
			{Name: "timer disabled", Do: func(t *testing.T) { sh(t, "systemctl disable "+u+".timer") }},
		},
		Timeout: 30 * time.Second,
	})
	if s := state(t, "tick"); !strings.HasSuffix(s, " active enabled") {
		t.Fatalf("after the suite: %s", s)
	}
	before := len(waitLines(t, marker, 1, 10*time.Second))
	lines := waitLines(t, marker, before+2, 10*time.Second)
	var st syscall.Stat_t
	must(t, syscall.Stat(marker, &st))
	if st.Uid != 65534 {
		t.Errorf("the marker is owned by uid %d, want nobody's 65534", st.Uid)
	}
	t.Logf("the timer fired at %v", lines)

	gone := newCron("tick", &Cron{State: "absent"})
	must(t, gone.Validate())
	for i, want := range []bool{true, false} {
		changed, err := gone.CheckApply(context.Background(), true)
		if err != nil || changed != want {
			t.Fatalf("absent, check %d: %v, %v", i, changed, err)
		}
	}
	if s := state(t, "tick"); !strings.HasPrefix(s, u+".timer=(missing) "+u+".service=(missing) inactive") {
		t.Fatalf("after absent: %s", s)
	}
}

// BenchmarkRepairLatency: the timer stopped by systemctl, until the
// watching loop has started it again (inside a test host).
func BenchmarkRepairLatency(b *testing.B) {
	if !testhost.InHost(b, testhost.Options{}) {
		return
	}
	r := newCron("bench", &Cron{Calendar: "hourly", Command: "true"})
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
	for b.Loop() {
		for len(repaired) > 0 { // a repair's own events may check again
			<-repaired
		}
		at := time.Now()
		sh(b, "systemctl --no-block stop mgmt-cron-bench.timer") // our repair may replace the stop job
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
}
