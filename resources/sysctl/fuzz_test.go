package sysctl

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts stays under /proc/sys and, persisted, writes one parameter line.
func FuzzValidate(f *testing.F) {
	f.Add("net.ipv4.ip_forward", "1", true, "", 0.0)
	f.Add("net/ipv4/conf/all/rp_filter", "2", false, "", 1.5)
	f.Add("../../etc/passwd", "x", true, "/etc/sysctl.d/x.conf", 0.001)
	f.Add("kernel..x", "1\n2", false, "rel", -1.0)
	f.Fuzz(func(t *testing.T, name, value string, persist bool, file string, interval float64) {
		r := &Sysctl{Name: name, Value: value, Persist: persist, File: file, Interval: interval}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		p := r.procPath()
		if filepath.Clean(p) != p || !strings.HasPrefix(p, "/proc/sys/") {
			t.Fatalf("name %q reads %s", name, p)
		}
		if pp := r.persistPath(); persist != (pp != "") || pp != "" && !filepath.IsAbs(pp) {
			t.Fatalf("persist %v file %q: %q", persist, file, pp)
		}
		if n := strings.Count(string(r.persistText()), "\n"); n != 2 {
			t.Fatalf("value %q persisted as %d lines", value, n)
		}
		if r.interval() <= 0 {
			t.Fatalf("interval %v", r.interval())
		}
	})
}
