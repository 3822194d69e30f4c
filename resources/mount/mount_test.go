package mount

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/yamlgraph"
	"golang.org/x/sys/unix"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		res  Mount
		want string
	}{
		{Mount{Device: "tmpfs", Type: "tmpfs"}, "mountpoint: \"\" is invalid"},
		{Mount{Mountpoint: "/", Device: "tmpfs", Type: "tmpfs"}, "/ cannot be managed"},
		{Mount{Mountpoint: "/mnt/x", Type: "tmpfs"}, "device: \"\" is invalid"},
		{Mount{Mountpoint: "/mnt/x", Device: "tmpfs"}, "type: \"\" is invalid"},
		{Mount{Mountpoint: "/mnt/x", Device: "tmpfs", Type: "tmpfs", State: "on"}, "want mounted (the default), unmounted or absent"},
		{Mount{Mountpoint: "/mnt/x", Device: "tmpfs", Type: "tmpfs", Options: Options{"a b"}}, "options: \"a b\" is invalid"},
	} {
		if err := c.res.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.res, err, c.want)
		}
	}
	if err := (&Mount{Mountpoint: "/mnt/x", State: "absent"}).Validate(); err != nil {
		t.Errorf("absent needs no device: %v", err)
	}
}

func TestEditFstab(t *testing.T) {
	r := &Mount{Mountpoint: "/mnt/x", Device: "tmpfs", Type: "tmpfs", Options: Options{"nosuid", "size=8m"}}
	must(t, r.Validate())
	old := "# a comment\nUUID=1 / ext4 defaults 0 1\ntmpfs /mnt/x tmpfs defaults 0 0\n"
	got, c := r.editFstab([]byte(old))
	if want := "# a comment\nUUID=1 / ext4 defaults 0 1\ntmpfs /mnt/x tmpfs nosuid,size=8m 0 0\n"; string(got) != want || c == nil {
		t.Fatalf("edited to %q (%+v), want %q", got, c, want)
	}
	if _, c := r.editFstab(got); c != nil {
		t.Errorf("second edit: %+v", c)
	}
	r.State = "absent"
	got, _ = r.editFstab(got)
	if string(got) != "# a comment\nUUID=1 / ext4 defaults 0 1\n" {
		t.Errorf("absent: %q", got)
	}
}

// TestOriginalOptionsMap: the original mgmt wrote options as a map, and
// state exists; both decode.
func TestOriginalOptionsMap(t *testing.T) {
	yg, err := yamlgraph.ParseFile("../../examples/mount1.yaml")
	must(t, err)
	for _, v := range yg.Vertices {
		must(t, v.Res.Validate())
	}
	r := yg.Vertices[0].Res.(*Mount)
	if strings.Join(r.Options, ",") != "nodev,nosuid,size=16m" || r.state() != StateMounted || r.mp != "/mnt/mgmt-scratch" {
		t.Errorf("decoded %+v", r)
	}
}

// The tests that mount run only inside a test host: the parent boots it
// and runs this test binary there (all the host's namespaces); the child
// refuses to mount anything unless its mount namespace is not its
// parent's and its root is the host's overlay.
const childEnv = "MGMT_MOUNT_PARENT_MNTNS"

func mntns(t testing.TB) string {
	l, err := os.Readlink("/proc/self/ns/mnt")
	must(t, err)
	return l
}

func inHost(t testing.TB) bool {
	parent := os.Getenv(childEnv)
	if parent == "" {
		return false
	}
	var st unix.Statfs_t
	must(t, unix.Statfs("/", &st))
	if mntns(t) == parent || st.Type != unix.OVERLAYFS_SUPER_MAGIC {
		t.Fatalf("refusing to mount: mount namespace %s (parent's %s), root filesystem type %#x: not in a test host", mntns(t), parent, st.Type)
	}
	return true
}

func runInHost(t testing.TB, args ...string) string {
	t.Helper()
	return runInHostWith(t, testhost.Options{}, nil, args...)
}

// runInHostWith is runInHost with the host's options and more of the
// child's environment; MGMT_REQUIRE_TESTHOSTS is passed on, so that a need
// missing inside fails the test there too.
func runInHostWith(t testing.TB, opts testhost.Options, env []string, args ...string) string {
	t.Helper()
	h := testhost.StartT(t, opts)
	bin, err := h.InstallBinary(os.Args[0], "mount.test")
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := h.Command(ctx, append([]string{bin, "-test.count=1", "-test.v"}, args...)...)
	cmd.Env = append(cmd.Env, childEnv+"="+mntns(t))
	if v, ok := os.LookupEnv(skip.Env); ok {
		cmd.Env = append(cmd.Env, skip.Env+"="+v)
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in the test host: %v\n%s", err, out)
	}
	return string(out)
}

func mountinfo(t testing.TB, mp string) string {
	t.Helper()
	m, err := current(mp)
	must(t, err)
	if m == nil {
		return "(not mounted)"
	}
	return m.source + " " + m.fstype + " " + strings.Join(m.opts, ",")
}

// TestConformance: the shared suite on a tmpfs in a test host, persisted
// to the host's /etc/fstab: an unmount, a remount without nosuid (both
// seen through mountinfo's POLLPRI) and the entry removed from fstab
// (inotify) are repaired.
func TestConformance(t *testing.T) {
	if !inHost(t) {
		out := runInHost(t, "-test.run=^TestConformance$")
		t.Logf("in the test host:\n%s", out)
		if !strings.Contains(out, "--- PASS: TestConformance") {
			t.Fatal("the suite did not pass in the host")
		}
		return
	}
	const mp = "/mnt/mgmt-test"
	restest.Run(t, restest.Case{
		Kind: "mount",
		Res: func(t *testing.T) engine.Res {
			r := &Mount{Device: "tmpfs", Type: "tmpfs", Options: Options{"nosuid", "nodev"}}
			r.SetName(mp)
			return r
		},
		State: func(t *testing.T) string {
			b, _ := os.ReadFile(DefaultFstab)
			return mountinfo(t, mp) + "\n" + string(b)
		},
		Drifts: []restest.Drift{
			{Name: "unmounted", Do: func(t *testing.T) { must(t, unix.Unmount(mp, 0)) }},
			{Name: "remounted suid", Do: func(t *testing.T) {
				out, err := exec.Command("mount", "-o", "remount,suid", mp).CombinedOutput()
				if err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			}},
			{Name: "fstab entry removed", Do: func(t *testing.T) {
				b, err := os.ReadFile(DefaultFstab)
				must(t, err)
				var kept []string
				for _, l := range strings.SplitAfter(string(b), "\n") {
					if !strings.Contains(l, mp) {
						kept = append(kept, l)
					}
				}
				must(t, os.WriteFile(DefaultFstab, []byte(strings.Join(kept, "")), 0o644))
			}},
		},
	})
}

// BenchmarkRepairLatency: the tmpfs unmounted from outside the resource,
// until the watching loop has mounted it again; in a test host.
func BenchmarkRepairLatency(b *testing.B) {
	if !inHost(b) {
		out := runInHost(b, "-test.run=^$", "-test.bench=^BenchmarkRepairLatency$", "-test.benchtime=30x")
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "BenchmarkRepairLatency") {
				b.Log(l)
				f := strings.Fields(l)
				for i := 1; i < len(f); i++ {
					if f[i] == "p50-ms" || f[i] == "p99-ms" {
						var v float64
						if _, err := fmt.Sscan(f[i-1], &v); err == nil {
							b.ReportMetric(v, f[i])
						}
					}
				}
			}
		}
		return
	}
	const mp = "/mnt/mgmt-bench"
	r := &Mount{Mountpoint: mp, Device: "tmpfs", Type: "tmpfs", Persist: new(bool)}
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
		must(b, unix.Unmount(mp, 0))
		at := time.Now()
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
	must(b, unix.Unmount(mp, 0))
}

// A loop device is the wanted image only if its backing file is that
// image: another image mounted there is not taken for it.
func TestSameSourceLoopBackingFile(t *testing.T) {
	dir := t.TempDir()
	old := sysBlock
	sysBlock = dir + "/sys"
	t.Cleanup(func() { sysBlock = old })
	img, other := dir+"/a.img", dir+"/b.img"
	for _, f := range []string{img, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(sysBlock+"/loop7/loop", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sysBlock+"/loop7/loop/backing_file", []byte(img+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(img, dir+"/link.img"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		want, got string
		same      bool
	}{
		{img, "/dev/loop7", true},
		{dir + "/link.img", "/dev/loop7", true}, // the same file by another name
		{other, "/dev/loop7", false},
		{other, "/dev/loop9", true}, // backing file unknown: as before
		{"tmpfs", "tmpfs", true},
		{"tmpfs", "none", false},
		{"UUID=1234", "/dev/sdb1", true},
		{"/dev/sdb1", "/dev/sdc1", false},
	} {
		if got := sameSource(tt.want, tt.got); got != tt.same {
			t.Errorf("sameSource(%q, %q) = %v, want %v", tt.want, tt.got, got, tt.same)
		}
	}
}
