package testhost

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// HoldDpkgLock takes dpkg's locks inside the host, as another package
// manager at work would (fcntl write locks on lock-frontend and lock, which
// is what apt and dpkg check), until the test ends. The files are opened
// through the host's root with RESOLVE_IN_ROOT, so that nothing outside the
// host can be reached; opening them for writing copies them into the
// host's own writable layer.
func (h *Host) HoldDpkgLock(tb testing.TB) {
	tb.Helper()
	root, err := os.OpenFile(h.Root(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer root.Close()
	for _, name := range []string{"var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock"} {
		fd, err := unix.Openat2(int(root.Fd()), name, &unix.OpenHow{
			Flags:   unix.O_RDWR | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_SYMLINKS,
		})
		if err != nil {
			tb.Fatalf("opening %s in the host: %v", name, err)
		}
		tb.Cleanup(func() { unix.Close(fd) }) // closing releases the lock
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk); err != nil {
			tb.Fatalf("locking %s in the host: %v", name, err)
		}
	}
}
