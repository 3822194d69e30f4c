package file

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

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

// TestApplyFailsCleanly: a directory that refuses changes (immutable, so
// even root gets EPERM) makes the apply fail with a permission error,
// leaves the old file and no temporary file, and the next apply after the
// fault is gone succeeds.
func TestApplyFailsCleanly(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "locked")
	must(t, os.Mkdir(dir, 0o755))
	p := filepath.Join(dir, "f")
	writeFile(t, p, "old")
	if err := setImmutable(t, dir, true); err != nil {
		t.Skipf("cannot make %s immutable on this filesystem: %v", dir, err)
	}
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
