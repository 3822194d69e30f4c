package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h, which x/sys/unix lacks.
const fsImmutableFL = 0x00000010

// setImmutable sets or clears the immutable attribute (chattr +i), which
// refuses changes even to root.
func setImmutable(t *testing.T, p string, on bool) error {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, flags)
}

// immutableDir returns a new directory, holding a file f with content
// "old", on a filesystem where the immutable attribute works: the test's
// temporary directory if it allows it (ext4 does; tmpfs and overlayfs do
// not), else a small ext4 image mounted in a private mount namespace of
// the test's own thread, which nothing else on the machine sees. Without
// either the test is skipped, or fails under MGMT_REQUIRE_TESTHOSTS=1.
func immutableDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "locked")
	must(t, os.Mkdir(dir, 0o755))
	err := errors.New(forceExt4 + "=1")
	if os.Getenv(forceExt4) != "1" {
		err = setImmutable(t, dir, true)
	}
	if err == nil {
		must(t, setImmutable(t, dir, false))
	} else {
		t.Logf("no immutable attribute in %s (%v): trying an ext4 image in a private mount namespace", dir, err)
		if dir, err = ext4Dir(t); err != nil {
			skipOrFail(t, fmt.Sprintf("no filesystem with an immutable attribute: %v", err))
		}
	}
	writeFile(t, filepath.Join(dir, "f"), "old")
	return dir
}

// forceExt4, set to 1, makes immutableDir use the ext4 image even where the
// temporary directory would do, to test that path.
const forceExt4 = "MGMT_TEST_FILE_EXT4"

// skipOrFail skips the test, or fails it under MGMT_REQUIRE_TESTHOSTS=1.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv(testhost.RequireEnv) == "1" {
		t.Fatalf("%s (%s=1)", msg, testhost.RequireEnv)
	}
	t.Skip(msg)
}

// ext4Dir mounts a fresh 8 MiB ext4 image and returns a directory in it.
// The mount is made in a new mount namespace of the calling goroutine's
// thread, which stays locked to it: the thread, and the namespace with the
// mount and its loop device, end with the test. Every mount in the new
// namespace is made private first, so that nothing propagates to the
// machine's.
func ext4Dir(t *testing.T) (string, error) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", err
		}
	}
	tmp := t.TempDir()
	img, mnt := filepath.Join(tmp, "ext4.img"), filepath.Join(tmp, "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "8M").CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	runtime.LockOSThread() // never unlocked: the thread exits with the test
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return "", fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("making the new namespace's mounts private: %w", err)
	}
	// mount(8) is forked from this thread, so it runs in its namespace.
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mount: %w: %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	mine, err := os.ReadFile("/proc/thread-self/mountinfo")
	must(t, err)
	machine, err := os.ReadFile("/proc/1/mountinfo")
	must(t, err)
	if !bytes.Contains(mine, []byte(" "+mnt+" ")) || bytes.Contains(machine, []byte(" "+mnt+" ")) {
		t.Fatalf("%s: want it mounted in the test's namespace only", mnt)
	}
	dir := filepath.Join(mnt, "locked")
	must(t, os.Mkdir(dir, 0o755))
	if err := setImmutable(t, dir, true); err != nil {
		return "", fmt.Errorf("ext4 image: %w", err)
	}
	must(t, setImmutable(t, dir, false))
	return dir, nil
}

// TestApplyFailsCleanly: a directory that refuses changes (immutable, so
// even root gets EPERM) makes the apply fail with a permission error,
// leaves the old file and no temporary file, and the next apply after the
// fault is gone succeeds.
func TestApplyFailsCleanly(t *testing.T) {
	if os.Getuid() != 0 {
		skipOrFail(t, "needs root to set the immutable attribute")
	}
	dir := immutableDir(t)
	p := filepath.Join(dir, "f")
	must(t, setImmutable(t, dir, true))
	t.Cleanup(func() { _ = setImmutable(t, dir, false) })
	before := describe(t, dir)

	r := &File{Path: p, Content: ptr("new")}
	must(t, r.Validate())
	changed, err := r.CheckApply(context.Background(), true)
	if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("CheckApply = %v, %v: want a permission error", changed, err)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || filepath.Dir(pe.Path) != dir || !IsTemp(filepath.Base(pe.Path)) {
		t.Errorf("error %v does not name the path it failed on", err)
	}
	if got := describe(t, dir); got != before {
		t.Errorf("the failed apply changed the directory:\n%s\nwant\n%s", got, before)
	}

	must(t, setImmutable(t, dir, false))
	if !apply(t, r) {
		t.Error("no change reported once the directory is writable")
	}
	if data, _ := os.ReadFile(p); string(data) != "new" {
		t.Errorf("content %q after the retry", data)
	}
}
