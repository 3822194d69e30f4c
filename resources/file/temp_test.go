package file

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mgmtconfig/mgmt/resources/restest"
	"golang.org/x/sys/unix"
)

func TestTempNames(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range []string{"/etc/motd", "/srv/" + strings.Repeat("x", 250)} {
		for range 1000 {
			tmp := tempName(p)
			if seen[tmp] {
				t.Fatalf("tempName(%q) gave %q twice", p, tmp)
			}
			seen[tmp] = true
			base := filepath.Base(tmp)
			if filepath.Dir(tmp) != filepath.Dir(p) || !IsTemp(base) || len(base) > 255 {
				t.Fatalf("tempName(%q) = %q: want a temporary name of at most 255 bytes beside it", p, tmp)
			}
		}
	}
	for _, name := range []string{".motd.mgmt-tmp", ".motd.0123456789abcdef.mgmt-tmp", ".mgmt-tmp-0011"} {
		if !IsTemp(name) {
			t.Errorf("IsTemp(%q) = false", name)
		}
	}
	for _, name := range []string{"motd", ".motd", "motd.mgmt-tmp", "mgmt-tmp-x"} {
		if IsTemp(name) {
			t.Errorf("IsTemp(%q) = true", name)
		}
	}
}

// TestTempNamesRefused: a path whose base name is a temporary name is
// refused, declared or collected (a collected .local.mgmt-tmp would land
// beside a local file named local as its temporary file).
func TestTempNamesRefused(t *testing.T) {
	for _, p := range []string{"/srv/.local.mgmt-tmp", "/srv/.local.0123456789abcdef.mgmt-tmp", "/srv/.mgmt-tmp-00ff.0123456789abcdef", "/srv/.d.mgmt-tmp/"} {
		r := &File{Path: p, Content: ptr("x")}
		if strings.HasSuffix(p, "/") {
			r.Content = nil
		}
		if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "the name of a temporary file") {
			t.Errorf("Validate(%s) = %v: want the name refused", p, err)
		}
		_, err := (&File{Path: p, Content: r.Content}).Collect("/srv/shared/")
		if !errors.Is(err, ErrCollect) || !strings.Contains(err.Error(), "the name of a temporary file") {
			t.Errorf("Collect(%s) = %v: want it refused for its name", p, err)
		}
	}
}

// TestPlantedTempFilesIgnored: files planted beforehand under temporary
// names (the fixed name of earlier versions, a symbolic link) are never
// written through (they are removed as leftovers), and what lands at the
// path is the resource's own file with its own mode.
func TestPlantedTempFilesIgnored(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	p := filepath.Join(root, "local")
	writeFile(t, outside+"/victim", "keep")
	planted := filepath.Join(root, ".local.mgmt-tmp")
	writeFile(t, planted, "attacker")
	must(t, os.Chmod(planted, 0o666))
	must(t, os.Symlink(outside+"/victim", filepath.Join(root, ".local.00000000000000ff.mgmt-tmp")))

	apply(t, &File{Path: p, Content: ptr("ours"), Mode: "0640"})
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if data, _ := os.ReadFile(p); string(data) != "ours" || st.Mode&0o7777 != 0o640 {
		t.Errorf("%s holds %q, mode %04o: want our content and mode", p, data, st.Mode&0o7777)
	}
	if data, _ := os.ReadFile(outside + "/victim"); string(data) != "keep" {
		t.Errorf("written through a planted link: %q", data)
	}
}

// TestTempNameRace is the attack of issue 12 item 9: something keeps
// putting its own file (other content, mode 0666) at the temporary name a
// managed file is written under, as a collected file of that name did.
// Every write must still put exactly its own content and mode at the path.
// Before the fix (one fixed temporary name per path) the attacker's file
// was renamed over the path in a share of the writes.
func TestTempNameRace(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "local")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stage := filepath.Join(root, "stage")
		for ctx.Err() == nil {
			if os.WriteFile(stage, []byte("attacker"), 0o666) != nil || os.Chmod(stage, 0o666) != nil {
				continue
			}
			_ = os.Rename(stage, filepath.Join(root, ".local.mgmt-tmp"))
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	bad, failed := 0, 0
	var last error
	const writes = 1000
	for i := range writes {
		want := "ours A"
		if i%2 == 1 {
			want = "ours B"
		}
		r := &File{Path: p, Content: ptr(want), Mode: "0640", log: slog.New(slog.DiscardHandler)}
		must(t, r.Validate())
		if _, err := r.CheckApply(context.Background(), true); err != nil {
			failed++
			last = err
			continue
		}
		var st unix.Stat_t
		must(t, unix.Stat(p, &st))
		if data, _ := os.ReadFile(p); string(data) != want || st.Mode&0o7777 != 0o640 {
			bad++
		}
	}
	if bad > 0 || failed > 0 {
		t.Errorf("of %d writes, %d left another file at the path and %d failed (last: %v)", writes, bad, failed, last)
	}
}

// TestLeftoversSwept: the first write into a directory removes the
// temporary files an earlier run left there, and nothing else.
func TestLeftoversSwept(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{".a.0123456789abcdef.mgmt-tmp", ".b.mgmt-tmp", ".mgmt-tmp-00ff.0123456789abcdef"} {
		writeFile(t, filepath.Join(root, name), "left by a crash")
	}
	must(t, os.Symlink("/nowhere", filepath.Join(root, ".c.0123456789abcdef.mgmt-tmp")))
	must(t, os.Mkdir(filepath.Join(root, ".d.mgmt-tmp"), 0o755)) // not ours: a directory
	writeFile(t, filepath.Join(root, "keep"), "x")
	writeFile(t, filepath.Join(root, "keep.mgmt-tmp"), "x")

	apply(t, &File{Path: filepath.Join(root, "f"), Content: ptr("new")})
	entries, err := os.ReadDir(root)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), ".d.mgmt-tmp f keep keep.mgmt-tmp"; got != want {
		t.Errorf("after the first write: %s, want %s", got, want)
	}
}

// TestLeftoversSweptWhenConverged: a kill -9 during a rewrite leaves a
// temporary file beside a path that still holds its old content. When the
// next run finds that content already right (the graph went back to it)
// nothing is written there: before the fix the sweep ran only on a write,
// and the leftover (166 MB of a killed 300 MB write, in the run measured)
// stayed for good. The first applying check of a resource now sweeps its
// directory; a noop check removes nothing.
func TestLeftoversSweptWhenConverged(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  func(root string) *File
	}{
		{"file", func(root string) *File { return &File{Path: filepath.Join(root, "f"), Content: ptr("old\n")} }},
		{"absent", func(root string) *File { return &File{Path: filepath.Join(root, "gone"), State: "absent"} }},
		{"directory", func(root string) *File { return &File{Path: filepath.Join(root, "d") + "/"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, "f"), "old\n")
			must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
			left := filepath.Join(root, ".f.0123456789abcdef.mgmt-tmp")
			writeFile(t, left, "half a write")

			r := tc.res(root)
			must(t, r.Validate())
			must(t, r.Init(restest.Env(t, "file")))
			changed, err := r.CheckApply(context.Background(), false)
			must(t, err)
			if changed {
				t.Fatalf("noop check: changed, want %s converged already", r.Path)
			}
			if _, err := os.Lstat(left); err != nil {
				t.Fatalf("a noop check removed the leftover: %v", err)
			}
			changed, err = r.CheckApply(context.Background(), true)
			must(t, err)
			if changed {
				t.Errorf("applying check changed %s, want it converged already", r.Path)
			}
			if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("leftover %s still there after a converged run: %v", left, err)
			}
		})
	}
}

// TestSweepSparesTempsInUse: two agents writing into one directory (hosts
// of a demo on one machine, or any two processes) each sweep it at their
// first check. Before the fix the sweep removed the other's temporary file
// in the middle of its write, whose rename then failed ("rename: no such
// file or directory"; 2 of 5 agents started at once failed so). A temporary
// file is locked (flock) from its creation to its rename; only unlocked
// ones, whose writer is gone, are leftovers.
func TestSweepSparesTempsInUse(t *testing.T) {
	root := t.TempDir()
	inUse := filepath.Join(root, ".other.0123456789abcdef.mgmt-tmp")
	fd, err := unix.Open(inUse, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	must(t, err)
	defer unix.Close(fd)
	must(t, unix.Flock(fd, unix.LOCK_EX)) // as another writer holds it
	left := filepath.Join(root, ".dead.0123456789abcdef.mgmt-tmp")
	writeFile(t, left, "left by a crash")

	swept.Delete(root)
	apply(t, &File{Path: filepath.Join(root, "f"), Content: ptr("new\n")})
	if _, err := os.Lstat(inUse); err != nil {
		t.Errorf("the sweep removed a temporary file still being written: %v", err)
	}
	if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s not removed: %v", left, err)
	}
}

// TestWriteLocksItsTemp: a write holds the lock on its temporary file up
// to the rename, so that a sweep by another process leaves it alone; a
// temporary file removed before the lock was taken is given up for another.
func TestWriteLocksItsTemp(t *testing.T) {
	root := t.TempDir()
	a := &applier{ctx: context.Background(), apply: true, log: slog.New(slog.DiscardHandler)}
	fd, tmp, err := a.createTemp(filepath.Join(root, "f"))
	must(t, err)
	defer unix.Close(fd)
	other, err := unix.Open(tmp, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(other)
	if err := unix.Flock(other, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
		t.Errorf("flock of a temporary file being written = %v, want EWOULDBLOCK", err)
	}
}
