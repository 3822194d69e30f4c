package mount

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
	"golang.org/x/sys/unix"
)

// loopTagEnv names, for the test inside the host, the tag in its image
// file's name, by which the test outside finds a loop device left attached.
const loopTagEnv = "MGMT_MOUNT_LOOP_TAG"

// loopsHolding lists the loop devices whose backing file's name contains
// tag. Loop devices are the kernel's: the same list inside a host and out.
func loopsHolding(t testing.TB, tag string) []string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	must(t, err)
	var devs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), tag) {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return devs
}

func sh(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestLoopDevice: the shared suite on an ext4 image on a loop device, in a
// test host (Options.Loop gives its /dev the loop nodes), persisted to the
// host's /etc/fstab, once with the device attached by losetup and once with
// the image file and the loop option (mount attaches it, and the kernel
// detaches it at the unmount): an unmount and a read-only remount from
// outside are repaired, then state absent unmounts and removes the entry.
// Outside, after the host has stopped, no loop device may hold the image.
func TestLoopDevice(t *testing.T) {
	if !inHost(t) {
		var b [8]byte
		rand.Read(b[:])
		tag := "mgmt-mount-loop-" + hex.EncodeToString(b[:])
		t.Cleanup(func() { // after the host's Stop (registered later)
			for _, dev := range loopsHolding(t, tag) {
				t.Errorf("%s is left attached to the test's image; detaching it", dev)
				if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
					t.Errorf("losetup -d %s: %v: %s", dev, err, out)
				}
			}
		})
		out := runInHostWith(t, testhost.Options{Loop: true}, []string{loopTagEnv + "=" + tag}, "-test.run=^TestLoopDevice$")
		t.Logf("in the test host:\n%s", out)
		if strings.Contains(out, "--- SKIP: TestLoopDevice ") {
			t.Skip("skipped in the host")
		}
		for _, name := range []string{"TestLoopDevice", "TestLoopDevice/device", "TestLoopDevice/image"} {
			if !strings.Contains(out, "--- PASS: "+name+" ") {
				t.Errorf("%s did not pass in the host", name)
			}
		}
		return
	}
	tag := os.Getenv(loopTagEnv)
	if tag == "" {
		t.Fatalf("%s is not set", loopTagEnv)
	}
	for _, need := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(need); err != nil {
			skip.OrFail(t, "%s is missing (util-linux, e2fsprogs)", need)
		}
	}
	if f, err := os.Open("/dev/loop-control"); err != nil {
		skip.OrFail(t, "no loop devices in the test host (%v): the kernel's loop module, and testhost.Options.Loop", err)
	} else {
		f.Close()
	}
	img := filepath.Join(t.TempDir(), tag+".img")
	f, err := os.Create(img)
	must(t, err)
	must(t, f.Truncate(8<<20))
	must(t, f.Close())
	sh(t, "mkfs.ext4", "-q", "-F", img)

	const mp = "/mnt/mgmt-loop"
	opts := Options{"rw", "noatime"}
	drifts := []restest.Drift{
		{Name: "unmounted", Do: func(t *testing.T) { must(t, unix.Unmount(mp, 0)) }},
		{Name: "remounted read-only", Do: func(t *testing.T) { sh(t, "mount", "-o", "remount,ro", mp) }},
	}
	// state is the mount as mountinfo shows it, a loop device named by
	// its backing file, and the fstab.
	state := func(t *testing.T) string {
		s := mountinfo(t, mp)
		if dev, _, ok := strings.Cut(s, " "); ok && strings.HasPrefix(dev, "/dev/loop") {
			b, err := os.ReadFile("/sys/block/" + strings.TrimPrefix(dev, "/dev/") + "/loop/backing_file")
			must(t, err)
			s += " (" + strings.TrimSpace(string(b)) + ")"
		}
		b, _ := os.ReadFile(DefaultFstab)
		return s + "\n" + string(b)
	}
	absent := func(t *testing.T) {
		t.Helper()
		t.Logf("mounted: %s", state(t))
		r := &Mount{Mountpoint: mp, State: StateAbsent}
		must(t, r.Validate())
		changed, err := r.CheckApply(t.Context(), true)
		if err != nil || !changed {
			t.Fatalf("state absent: CheckApply = %v, %v; want a change", changed, err)
		}
		if m := mountinfo(t, mp); m != "(not mounted)" {
			t.Errorf("state absent: %s is still mounted: %s", mp, m)
		}
		if b, _ := os.ReadFile(DefaultFstab); strings.Contains(string(b), mp) {
			t.Errorf("state absent: the fstab still has %s:\n%s", mp, b)
		}
		if changed, err := r.CheckApply(t.Context(), true); err != nil || changed {
			t.Errorf("state absent, again: CheckApply = %v, %v; want nothing to do", changed, err)
		}
	}
	unmountLeft := func() { // on a failure: the loop device cannot be detached while mounted
		for unix.Unmount(mp, 0) == nil {
		}
	}

	t.Run("device", func(t *testing.T) {
		dev := sh(t, "losetup", "--find", "--show", img)
		t.Logf("attached %s", dev)
		t.Cleanup(func() {
			unmountLeft()
			if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v: %s", dev, err, out)
			}
		})
		restest.Run(t, restest.Case{
			Kind: "mount",
			Res: func(t *testing.T) engine.Res {
				r := &Mount{Device: dev, Type: "ext4", Options: opts}
				r.SetName(mp)
				return r
			},
			State:  state,
			Drifts: drifts,
		})
		absent(t)
	})

	t.Run("image", func(t *testing.T) {
		t.Cleanup(unmountLeft) // the kernel detaches a loop device mount attached (autoclear)
		restest.Run(t, restest.Case{
			Kind: "mount",
			Res: func(t *testing.T) engine.Res {
				r := &Mount{Device: img, Type: "ext4", Options: append(Options{"loop"}, opts...)}
				r.SetName(mp)
				return r
			},
			State:  state,
			Drifts: drifts,
		})
		absent(t)
		wait.Until(t, 5*time.Second, func() bool { return len(loopsHolding(t, tag)) == 0 }, func() string {
			return "the loop device mount attached is still attached after the unmount: " + strings.Join(loopsHolding(t, tag), ", ")
		})
	})
	if devs := loopsHolding(t, tag); len(devs) > 0 {
		t.Error(errors.New("loop devices still attached inside the host: " + strings.Join(devs, ", ")))
	}
}
