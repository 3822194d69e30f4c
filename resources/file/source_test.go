package file

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"golang.org/x/sys/unix"
)

// checkApplyWithin runs CheckApply and fails the test if it has not
// returned within d: a blocked open must not hang the resource.
func checkApplyWithin(t *testing.T, r *File, d time.Duration) (bool, error) {
	t.Helper()
	type result struct {
		changed bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		c, err := r.CheckApply(context.Background(), true)
		done <- result{c, err}
	}()
	select {
	case res := <-done:
		return res.changed, res.err
	case <-time.After(d):
		t.Fatalf("CheckApply of %s did not return within %v", r.Path, d)
		return false, nil
	}
}

// TestSpecialSourceRefused: a fifo, a socket or a device as a source is
// refused by Validate when it is there already, and by CheckApply, at once
// and without opening it, when it appears after Validate. Before the fix
// the open of a fifo without a writer blocked CheckApply forever.
func TestSpecialSourceRefused(t *testing.T) {
	root := t.TempDir()
	fifo := filepath.Join(root, "fifo")
	must(t, unix.Mkfifo(fifo, 0o644))
	// A writer would unblock a hung open; it is opened only at the end, so
	// that a regression fails the test instead of hanging the binary.
	t.Cleanup(func() {
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			unix.Close(fd)
		}
	})
	sock := filepath.Join(root, "sock")
	l, err := net.Listen("unix", sock)
	must(t, err)
	t.Cleanup(func() { l.Close() })

	for _, tc := range []struct{ src, typ string }{
		{fifo, "fifo"},
		{sock, "socket"},
		{"/dev/null", "character device"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			r := &File{Path: filepath.Join(root, "dst-"+filepath.Base(tc.src)), Source: tc.src}
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), "source: "+tc.src+" is a "+tc.typ+": want a regular file") {
				t.Fatalf("Validate = %v, want the %s refused", err, tc.typ)
			}

			// The same source appearing after Validate: refused by CheckApply.
			stage := filepath.Join(t.TempDir(), "src")
			writeFile(t, stage, "regular\n")
			r = &File{Path: filepath.Join(root, "late-"+filepath.Base(tc.src)), Source: stage}
			must(t, r.Validate())
			must(t, os.Remove(stage))
			must(t, os.Symlink(tc.src, stage))
			changed, err := checkApplyWithin(t, r, 5*time.Second)
			if !errors.Is(err, errNotRegular) || changed {
				t.Fatalf("CheckApply = %v, %v: want the %s refused", changed, err, tc.typ)
			}
			if !strings.Contains(err.Error(), "is a "+tc.typ) {
				t.Errorf("error %q does not say what the source is", err)
			}
			if _, err := os.Lstat(r.Path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was created from a refused source: %v", r.Path, err)
			}
		})
	}
}

// TestFifoSwappedInAfterStat: a fifo put in place of the source between
// openRegular's stat and its open is refused by openChecked, without
// blocking on the open.
func TestFifoSwappedInAfterStat(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	must(t, unix.Mkfifo(fifo, 0o644))
	done := make(chan error, 1)
	go func() {
		fd, err := openChecked(fifo)
		if err == nil {
			unix.Close(fd)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errNotRegular) || !strings.Contains(err.Error(), fifo+" is a fifo") {
			t.Errorf("openChecked(fifo) = %v, want it refused as a fifo", err)
		}
	case <-time.After(5 * time.Second):
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			defer unix.Close(fd) // unblock the open, so the goroutine ends
		}
		t.Fatal("openChecked blocked on a fifo")
	}
}

// TestProcSourceConverges: a source under /proc reports size 0 whatever it
// holds. The copy must be compared by content, so that once written it
// stays converged: before the fix each check found the sizes different
// (0 and the real length) and rewrote the file, whose rename woke the
// watch again, about 320 writes a second.
func TestProcSourceConverges(t *testing.T) {
	const src = "/proc/version"
	want, err := os.ReadFile(src)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Stat(src, &st))
	if st.Size != 0 {
		t.Logf("%s reports size %d (the test needs the size to be wrong to prove anything)", src, st.Size)
	}

	dst := filepath.Join(t.TempDir(), "version")
	r := &File{Path: dst, Source: src}
	must(t, r.Validate())
	must(t, r.Init(restest.Env(t, "file")))
	var writes, checks atomic.Int64
	reports := make(chan error, 1000)
	restest.Loop(t, r, func(changed bool, err error) {
		checks.Add(1)
		if changed {
			writes.Add(1)
		}
		select {
		case reports <- err:
		default:
		}
	})
	waitFor(t, reports, func() bool {
		got, err := os.ReadFile(dst)
		return err == nil && string(got) == string(want)
	}, "the first apply")

	// Count writes over a window: a converged resource writes nothing.
	before, checksBefore := writes.Load(), checks.Load()
	time.Sleep(500 * time.Millisecond) // a measurement window, not a wait for a condition
	if n := writes.Load() - before; n > 0 {
		t.Errorf("%d writes (%d checks) in 500ms after the copy was made: want none", n, checks.Load()-checksBefore)
	}
	if changed, err := r.CheckApply(context.Background(), false); err != nil || changed {
		t.Errorf("a check of the copy = %v, %v: want nothing to do", changed, err)
	}
}

// TestSourceKeepsNonblock: the descriptor of a regular source keeps
// O_NONBLOCK for the whole read. Regular disk files ignore it; files that
// honour it (/proc/kmsg, FUSE) then fail the read with EAGAIN instead of
// blocking it. Before the fix openChecked cleared the flag after its check.
func TestSourceKeepsNonblock(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, src, "regular\n")
	fd, err := openRegular(src)
	must(t, err)
	defer unix.Close(fd)
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	must(t, err)
	if flags&unix.O_NONBLOCK == 0 {
		t.Errorf("openRegular(%s): O_NONBLOCK cleared (flags %#o)", src, flags)
	}
}

// TestSourceWouldBlock: a source whose read would block fails CheckApply
// at once with ErrSourceWouldBlock, naming the source. No regular file on
// this machine can be read safely for that (reading /proc/kmsg consumes
// the kernel log), so the source's descriptor is swapped for the read end
// of an empty pipe whose writer stays open, opened as openRegular opens:
// O_NONBLOCK. Before the fix the read was parked in the runtime poller
// (an os.File of a pollable descriptor) and CheckApply hung until its
// timeout; a real /proc/kmsg hung the same way with the flag cleared.
func TestSourceWouldBlock(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	writeFile(t, src, "regular\n")
	r := &File{Path: filepath.Join(root, "dst"), Source: src}
	must(t, r.Validate())
	must(t, r.Init(restest.Env(t, "file")))

	var p [2]int
	must(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	t.Cleanup(func() { unix.Close(p[1]) }) // the writer: held open, never written
	old := openSource
	t.Cleanup(func() { openSource = old })
	openSource = func(path string) (int, error) {
		if path != src {
			return -1, errors.New("unexpected source " + path)
		}
		fd, err := unix.Dup(p[0])
		if err != nil {
			return -1, err
		}
		unix.CloseOnExec(fd)
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	t.Cleanup(func() { unix.Close(p[0]) })

	changed, err := checkApplyWithin(t, r, 5*time.Second)
	if !errors.Is(err, ErrSourceWouldBlock) || changed {
		t.Fatalf("CheckApply = %v, %v: want ErrSourceWouldBlock", changed, err)
	}
	if !strings.Contains(err.Error(), src) {
		t.Errorf("error %q does not name the source %s", err, src)
	}
	if _, err := os.Lstat(r.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created from a source that would block: %v", r.Path, err)
	}
	matches, _ := filepath.Glob(filepath.Join(root, ".*mgmt-tmp"))
	if len(matches) > 0 {
		t.Errorf("temp files left behind: %v", matches)
	}
}
