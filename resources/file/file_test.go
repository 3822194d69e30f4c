package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/skip"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

func ptr(s string) *string { return &s }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	if os.Getuid() != 0 {
		skip.OrFail(t, "needs root to change owners (running as uid %d)", os.Getuid())
	}
}

// describe lists everything under root as it is: type, mode, owner, and a
// hash of each file's content or each link's target. Time stamps are left
// out.
func describe(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(root, p)
		if err != nil {
			fmt.Fprintf(&b, "%s error %v\n", rel, err)
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		extra := ""
		typ := "?"
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			typ = "dir"
		case unix.S_IFLNK:
			typ = "link"
			extra, _ = os.Readlink(p)
		case unix.S_IFREG:
			typ = "file"
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			extra = fmt.Sprintf("%d:%s", len(data), hex.EncodeToString(sum[:6]))
		}
		fmt.Fprintf(&b, "%s %s %04o %d:%d %s\n", rel, typ, st.Mode&0o7777, st.Uid, st.Gid, extra)
		return nil
	})
	must(t, err)
	return b.String()
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

// conformance is one restest case over a fresh directory root.
type conformance struct {
	name   string
	root   bool // needs root
	res    func(t *testing.T, root string) *File
	drifts func(root, outside string) []restest.Drift
}

func drift(name string, do func() error) restest.Drift {
	return restest.Drift{Name: name, Do: func(t *testing.T) { must(t, do()) }}
}

func TestConformance(t *testing.T) {
	cases := []conformance{{
		name: "content",
		root: true,
		res: func(t *testing.T, root string) *File {
			return &File{Path: root + "/sub/f", Content: ptr("hello\n"), Mode: "0640", Owner: "root", GroupName: "0"}
		},
		drifts: func(root, outside string) []restest.Drift {
			p := root + "/sub/f"
			return []restest.Drift{
				drift("edit", func() error { return os.WriteFile(p, []byte("changed by hand\n"), 0o640) }),
				drift("edit keeping the size", func() error { return os.WriteFile(p, []byte("HELLO\n"), 0o640) }),
				drift("append", func() error {
					f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						return err
					}
					_, err = f.WriteString("more\n")
					return errors.Join(err, f.Close())
				}),
				drift("truncate", func() error { return os.Truncate(p, 0) }),
				drift("delete", func() error { return os.Remove(p) }),
				drift("chmod", func() error { return os.Chmod(p, 0o666) }),
				drift("chown", func() error { return os.Chown(p, 1, 1) }),
				drift("rename away", func() error { return os.Rename(p, outside+"/g") }),
				drift("replace by a symlink", func() error {
					if err := os.Remove(p); err != nil {
						return err
					}
					return os.Symlink("/etc/hostname", p)
				}),
				drift("remove the parent directory", func() error { return os.RemoveAll(root + "/sub") }),
			}
		},
	}, {
		name: "empty content",
		res: func(t *testing.T, root string) *File {
			return &File{Path: root + "/empty", Content: ptr("")}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("write", func() error { return os.WriteFile(root+"/empty", []byte("x"), 0o644) }),
			}
		},
	}, {
		name: "source file",
		res: func(t *testing.T, root string) *File {
			src := filepath.Join(t.TempDir(), "src")
			writeFile(t, src, strings.Repeat("source line\n", 20000)) // more than one buffer
			return &File{Path: root + "/copy", Source: src}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("edit in the middle", func() error {
					f, err := os.OpenFile(root+"/copy", os.O_WRONLY, 0)
					if err != nil {
						return err
					}
					_, err = f.WriteAt([]byte("SOURCE"), 100000)
					return errors.Join(err, f.Close())
				}),
			}
		},
	}, {
		name: "directory",
		res: func(t *testing.T, root string) *File {
			return &File{Path: root + "/a/b/", Mode: "0750"}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("chmod", func() error { return os.Chmod(root+"/a/b", 0o777) }),
				drift("rmdir", func() error { return os.Remove(root + "/a/b") }),
				drift("remove the parent", func() error { return os.RemoveAll(root + "/a") }),
				drift("replace by a symlink", func() error {
					if err := os.Remove(root + "/a/b"); err != nil {
						return err
					}
					return os.Symlink(root, root+"/a/b")
				}),
			}
		},
	}, {
		name: "tree with purge",
		res: func(t *testing.T, root string) *File {
			src := t.TempDir()
			must(t, os.MkdirAll(src+"/x/y", 0o750))
			writeFile(t, src+"/top", "top\n")
			writeFile(t, src+"/x/y/deep", "deep\n")
			must(t, os.Chmod(src+"/x/y/deep", 0o600))
			must(t, os.Symlink("../top", src+"/x/up"))
			must(t, os.MkdirAll(root+"/dst/old/stuff", 0o755))
			writeFile(t, root+"/dst/old/stuff/file", "not in the source")
			writeFile(t, root+"/dst/stray", "not in the source")
			return &File{Path: root + "/dst/", Source: src, Recurse: true, Purge: true}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("edit deep", func() error { return os.WriteFile(root+"/dst/x/y/deep", []byte("edited"), 0o600) }),
				drift("chmod deep", func() error { return os.Chmod(root+"/dst/x/y/deep", 0o644) }),
				drift("delete deep", func() error { return os.Remove(root + "/dst/x/y/deep") }),
				drift("add a stray file deep", func() error { return os.WriteFile(root+"/dst/x/y/stray", nil, 0o644) }),
				drift("remove a subtree", func() error { return os.RemoveAll(root + "/dst/x") }),
				drift("retarget a link", func() error {
					if err := os.Remove(root + "/dst/x/up"); err != nil {
						return err
					}
					return os.Symlink("/etc", root+"/dst/x/up")
				}),
			}
		},
	}, {
		name: "absent",
		res: func(t *testing.T, root string) *File {
			writeFile(t, root+"/gone", "remove me")
			return &File{Path: root + "/gone", State: StateAbsent}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("recreate", func() error { return os.WriteFile(root+"/gone", []byte("back"), 0o644) }),
				drift("recreate as a symlink", func() error { return os.Symlink(root, root+"/gone") }),
			}
		},
	}, {
		name: "absent directory with force",
		res: func(t *testing.T, root string) *File {
			must(t, os.MkdirAll(root+"/d/e", 0o755))
			writeFile(t, root+"/d/e/f", "x")
			return &File{Path: root + "/d/", State: StateAbsent, Force: true}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("recreate", func() error { return os.MkdirAll(root+"/d/e", 0o755) }),
			}
		},
	}, {
		name: "symlink at the path",
		res: func(t *testing.T, root string) *File {
			writeFile(t, root+"/target", "the link's target, never written\n")
			must(t, os.Symlink(root+"/target", root+"/link"))
			return &File{Path: root + "/link", Content: ptr("a regular file\n")}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("symlink again", func() error {
					if err := os.Remove(root + "/link"); err != nil {
						return err
					}
					return os.Symlink(root+"/target", root+"/link")
				}),
			}
		},
	}, {
		name: "force a directory into a file",
		res: func(t *testing.T, root string) *File {
			must(t, os.MkdirAll(root+"/p/inner", 0o755))
			return &File{Path: root + "/p", Content: ptr("file now\n"), Force: true}
		},
		drifts: func(root, outside string) []restest.Drift {
			return []restest.Drift{
				drift("directory again", func() error {
					if err := os.Remove(root + "/p"); err != nil {
						return err
					}
					return os.MkdirAll(root+"/p/x", 0o755)
				}),
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				needRoot(t)
			}
			root, outside := t.TempDir(), t.TempDir()
			restest.Run(t, restest.Case{
				Kind:   "file",
				Res:    func(t *testing.T) engine.Res { return tc.res(t, root) },
				State:  func(t *testing.T) string { return describe(t, root) },
				Drifts: tc.drifts(root, outside),
			})
		})
	}
}

func apply(t *testing.T, r *File) bool {
	t.Helper()
	must(t, r.Validate())
	must(t, r.Init(restest.Env(t, "file")))
	changed, err := r.CheckApply(context.Background(), true)
	must(t, err)
	return changed
}

func TestSymlinkIsReplacedNotFollowed(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeFile(t, outside+"/secret", "precious\n")
	must(t, os.Chmod(outside+"/secret", 0o600))
	must(t, os.Symlink(outside+"/secret", root+"/f"))
	before := describe(t, outside)

	apply(t, &File{Path: root + "/f", Content: ptr("managed\n"), Mode: "0644"})

	if got := describe(t, outside); got != before {
		t.Errorf("the link's target changed:\n%s\nwant\n%s", got, before)
	}
	fi, err := os.Lstat(root + "/f")
	must(t, err)
	if !fi.Mode().IsRegular() {
		t.Fatalf("%s is a %v, want a regular file", root+"/f", fi.Mode())
	}
	if data, _ := os.ReadFile(root + "/f"); string(data) != "managed\n" {
		t.Errorf("content %q", data)
	}

	// A directory resource replaces a symlink to a directory too.
	must(t, os.Symlink(outside, root+"/d"))
	apply(t, &File{Path: root + "/d/", Mode: "0700"})
	if fi, err := os.Lstat(root + "/d"); err != nil || !fi.IsDir() {
		t.Errorf("%s: %v, %v: want a directory", root+"/d", fi, err)
	}
	if got := describe(t, outside); got != before {
		t.Errorf("the link's target directory changed:\n%s\nwant\n%s", got, before)
	}
}

func TestNewModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := t.TempDir()
	apply(t, &File{Path: root + "/new/parent/f", Content: ptr("x")})
	apply(t, &File{Path: root + "/d/"})
	apply(t, &File{Path: root + "/m", Content: ptr("x"), Mode: "0604"})
	want := map[string]os.FileMode{
		"new": 0o755, "new/parent": 0o755, "new/parent/f": 0o644, "d": 0o755, "m": 0o604,
	}
	for p, mode := range want {
		fi, err := os.Stat(filepath.Join(root, p))
		must(t, err)
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), mode)
		}
	}
}

func TestContentChangeKeepsUnmanagedModeAndOwner(t *testing.T) {
	needRoot(t)
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, "old")
	must(t, os.Chown(p, 12, 34)) // before chmod: chown clears setuid
	must(t, unix.Chmod(p, 0o4711))
	if !apply(t, &File{Path: p, Content: ptr("new")}) {
		t.Fatal("no change reported")
	}
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Mode&0o7777 != 0o4711 || st.Uid != 12 || st.Gid != 34 {
		t.Errorf("mode %04o owner %d:%d, want 4711 12:34", st.Mode&0o7777, st.Uid, st.Gid)
	}
}

// In a setgid directory a new file takes the directory's group; a file
// whose content is replaced keeps its own.
func TestContentChangeInSetgidDirectoryKeepsGroup(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "shared")
	must(t, os.Mkdir(dir, 0o755))
	must(t, os.Chown(dir, 0, 50))
	must(t, unix.Chmod(dir, 0o2775))
	p := filepath.Join(dir, "f")
	writeFile(t, p, "old")
	must(t, os.Chown(p, 0, 0))
	apply(t, &File{Path: p, Content: ptr("new")})
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Gid != 0 {
		t.Errorf("group %d after the content changed, want 0 as before", st.Gid)
	}
}

func TestSetuidSurvivesChown(t *testing.T) {
	needRoot(t)
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, "x")
	must(t, unix.Chmod(p, 0o4755))
	r := &File{Path: p, Mode: "4755", Owner: "7", GroupName: "7"}
	if !apply(t, r) {
		t.Fatal("no change reported")
	}
	if apply(t, r) {
		t.Error("second apply changed something")
	}
	var st unix.Stat_t
	must(t, unix.Stat(p, &st))
	if st.Mode&0o7777 != 0o4755 || st.Uid != 7 {
		t.Errorf("mode %04o uid %d, want 4755 and 7", st.Mode&0o7777, st.Uid)
	}
}

func TestInTheWayNeedsForce(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(root+"/dir/inner", 0o755))
	must(t, os.MkdirAll(root+"/full/inner", 0o755))
	writeFile(t, root+"/file", "x")
	tests := []struct {
		name string
		res  *File
	}{
		{"directory where a file belongs", &File{Path: root + "/dir", Content: ptr("x")}},
		{"file where a directory belongs", &File{Path: root + "/file/"}},
		{"non-empty directory to remove", &File{Path: root + "/full/", State: StateAbsent}},
	}
	for _, tt := range tests {
		must(t, tt.res.Validate())
		before := describe(t, root)
		_, err := tt.res.CheckApply(context.Background(), true)
		if !errors.Is(err, ErrInTheWay) {
			t.Errorf("%s: %v, want ErrInTheWay", tt.name, err)
		}
		if got := describe(t, root); got != before {
			t.Errorf("%s: the failed apply changed the machine", tt.name)
		}
		tt.res.Force = true
		must(t, tt.res.Validate())
		if !apply(t, tt.res) {
			t.Errorf("%s: with force: no change reported", tt.name)
		}
	}
}

func TestTreeCopiesSource(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must(t, os.MkdirAll(src+"/a/b/c", 0o700))
	for i := range 20 {
		writeFile(t, fmt.Sprintf("%s/a/b/f%d", src, i), strings.Repeat("x", i*1000))
	}
	must(t, os.Chmod(src+"/a/b/f3", 0o755))
	must(t, os.Symlink("f3", src+"/a/b/l"))
	writeFile(t, dst+"/keep", "extra")

	r := &File{Path: dst + "/", Source: src, Recurse: true}
	apply(t, r)
	if got := describe(t, dst); !strings.Contains(got, "keep file") {
		t.Errorf("without purge, an extra file was removed:\n%s", got)
	}
	r.Purge = true
	apply(t, r)
	// The root directories themselves may differ; everything below must not.
	if got, want := describe(t, dst), describe(t, src); afterFirstLine(got) != afterFirstLine(want) {
		t.Errorf("tree copy is\n%s\nwant\n%s", got, want)
	}
	if apply(t, r) {
		t.Error("a second apply of the tree changed something")
	}
}

func afterFirstLine(s string) string {
	_, rest, _ := strings.Cut(s, "\n")
	return rest
}

func TestAbsentFileIsNotFollowed(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root+"/target", "keep")
	must(t, os.Symlink(root+"/target", root+"/link"))
	apply(t, &File{Path: root + "/link", State: StateAbsent})
	if _, err := os.Lstat(root + "/link"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link is still there: %v", err)
	}
	if data, err := os.ReadFile(root + "/target"); err != nil || string(data) != "keep" {
		t.Errorf("target: %q, %v", data, err)
	}
	if apply(t, &File{Path: root + "/never/was", State: StateAbsent}) {
		t.Error("removing a missing path reported a change")
	}
}

// TestRepairWithManagedParent runs a directory and a file in it the way the
// engine does, and removes the directory behind their back.
func TestRepairWithManagedParent(t *testing.T) {
	root := t.TempDir()
	dir := &File{Path: root + "/conf.d/", Mode: "0700"}
	file := &File{Path: root + "/conf.d/app.conf", Content: ptr("key = value\n"), Mode: "0600"}
	reports := make(chan error, 100)
	report := func(_ bool, err error) { reports <- err }
	for _, r := range []*File{dir, file} {
		must(t, r.Validate())
		must(t, r.Init(restest.Env(t, "file")))
		restest.Loop(t, r, report)
	}
	want := func() bool {
		var st unix.Stat_t
		if unix.Stat(root+"/conf.d", &st) != nil || st.Mode&0o7777 != 0o700 {
			return false
		}
		data, err := os.ReadFile(root + "/conf.d/app.conf")
		return err == nil && string(data) == "key = value\n"
	}
	waitFor(t, reports, want, "the first apply")
	for range 3 {
		// The resources may repair while rm -rf runs: retry, as a user would.
		for try := 0; ; try++ {
			err := os.RemoveAll(root + "/conf.d")
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.ENOTEMPTY) || try == 100 {
				t.Fatal(err)
			}
		}
		waitFor(t, reports, want, "removing the directory")
	}
}

// waitFor waits until cond holds, checking it after each apply the loops
// report (an error may be a passing state: the file before its directory).
func waitFor(t *testing.T, reports <-chan error, cond func() bool, after string) {
	t.Helper()
	deadline := time.After(restest.DefaultTimeout)
	var last error
	for !cond() {
		select {
		case err := <-reports:
			last = err
		case <-deadline:
			t.Fatalf("not repaired within %v after %s (last apply error: %v)", restest.DefaultTimeout, after, last)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		res  File
		want string // "" means valid
	}{
		{File{Path: "/etc/motd"}, ""},
		{File{Path: "/etc/motd", Content: ptr(""), Mode: "644", Owner: "root", GroupName: "root"}, ""},
		{File{Path: "/srv/www/", Source: "/opt/site", Recurse: true, Purge: true, Mode: "2775", Owner: "0", GroupName: "0"}, ""},
		{File{Path: "/tmp/x", State: "absent", Force: true}, ""},
		{File{}, "path: missing: want an absolute path, e.g. path: /etc/motd (a trailing / makes it a directory)"},
		{File{Path: "etc/motd"}, `path: "etc/motd" is relative: want an absolute path, e.g. /etc/motd`},
		{File{Path: "/etc/motd", State: "present"}, `state: "present" is invalid: want exists (the default) or absent`},
		{File{Path: "/etc/motd", Content: ptr("x"), Source: "/tmp/motd"}, "content and source: give only one: content is the file's exact text, source copies a local file"},
		{File{Path: "/etc/motd", Source: "motd"}, `source: "motd" is relative: want an absolute path`},
		{File{Path: "/etc/motd", Source: "/dev/null"}, "source: /dev/null is a character device: want a regular file"},
		{File{Path: "/etc/motd", Source: "/proc"}, "source: /proc is a directory: want a regular file"},
		{File{Path: "/srv/", Source: "/proc/version", Recurse: true}, "source: /proc/version is a regular file: want a directory to copy with recurse"},
		{File{Path: "/etc/motd", Source: "/dev/null", State: StateAbsent}, ""},
		{File{Path: "/etc/motd", Source: "/no/such/source"}, ""},
		{File{Path: "/srv", Recurse: true, Source: "/opt"}, "recurse: needs a directory path (ending in /) and a source directory to copy"},
		{File{Path: "/srv/", Purge: true}, "purge: needs recurse: true and a source directory: it removes what the source does not have"},
		{File{Path: "/etc/motd", Mode: "999"}, `mode: "999" is invalid: want 3 or 4 octal digits, e.g. "0644" or "2775"`},
		{File{Path: "/etc/motd", Mode: "rw-r--r--"}, `mode: "rw-r--r--" is invalid: want 3 or 4 octal digits, e.g. "0644" or "2775"`},
		{File{Path: "/etc/motd", Mode: "17777"}, `mode: "17777" is invalid: want 3 or 4 octal digits, e.g. "0644" or "2775"`},
		// Names are resolved when applied: the graph may create them.
		{File{Path: "/etc/motd", Owner: "no-such-user-here"}, ""},
		{File{Path: "/etc/motd", GroupName: "no-such-group-here"}, ""},
		{File{Path: "/etc/motd", Owner: "4294967295", GroupName: "a\x00b"}, `owner: "4294967295": -1 is not an id: want a user name or a numeric uid` + "\n" +
			`group: "a\x00b": contains a NUL byte: want a group name or a numeric gid`},
		{File{Path: "/", State: StateAbsent, Force: true}, "path: / cannot be removed, purged or forced: want a directory below it"},
		{File{Path: "/", Source: "/srv", Recurse: true, Purge: true}, "path: / cannot be removed, purged or forced: want a directory below it"},
		{File{Path: "/", Mode: "0755"}, ""},
		{File{Path: "motd", State: "gone", Mode: "8"}, `path: "motd" is relative: want an absolute path, e.g. /etc/motd` + "\n" +
			`state: "gone" is invalid: want exists (the default) or absent` + "\n" +
			`mode: "8" is invalid: want 3 or 4 octal digits, e.g. "0644" or "2775"`},
	}
	for _, tt := range tests {
		err := tt.res.Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Validate(%+v) =\n%s\nwant\n%s", tt.res, got, tt.want)
		}
	}
	var f File
	if _, err := f.CheckApply(context.Background(), false); err == nil {
		t.Error("CheckApply of an invalid file did not fail")
	}
}

func TestSetName(t *testing.T) {
	for _, tt := range []struct{ path, name, want string }{
		{"", "/etc/motd", "/etc/motd"},
		{"/etc/issue", "/etc/motd", "/etc/issue"},
		{"", "motd", ""},
	} {
		r := &File{Path: tt.path}
		r.SetName(tt.name)
		if r.Path != tt.want {
			t.Errorf("path %q, SetName(%q): path %q, want %q", tt.path, tt.name, r.Path, tt.want)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	src := `
path: /etc/motd
content: |
  hello
mode: 0640
owner: 0
group: root
force: true
`
	var f File
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	must(t, dec.Decode(&f))
	if f.Content == nil || *f.Content != "hello\n" || f.Mode != "0640" || f.Owner != "0" || !f.Force {
		t.Errorf("decoded %+v", f)
	}
	must(t, f.Validate())
	if f.s.mode != 0o640 {
		t.Errorf("mode 0640 parsed as %04o", f.s.mode)
	}

	var g File
	must(t, yaml.Unmarshal([]byte("path: /etc/motd\n"), &g))
	if g.Content != nil {
		t.Error("absent content decoded as managed")
	}
	dec = yaml.NewDecoder(strings.NewReader("path: /x\ncontnet: typo\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&File{}); err == nil {
		t.Error("an unknown parameter was accepted")
	}
}

func TestUIDsAndAutoEdges(t *testing.T) {
	f := &File{Path: "/var/lib/foo/bar/"}
	if got, want := f.UIDs(), []engine.UID{{Kind: "file", Key: "/var/lib/foo/bar"}}; !slices.Equal(got, want) {
		t.Errorf("UIDs = %v, want %v", got, want)
	}
	edges, err := f.AutoEdges(context.Background())
	must(t, err)
	want := []engine.UID{{Kind: "file", Key: "/var/lib/foo"}, {Kind: "file", Key: "/var/lib"}, {Kind: "file", Key: "/var"}, {Kind: "file", Key: "/"}}
	if len(edges) != 1 || !slices.Equal(edges[0].UIDs, want) || edges[0].Before {
		t.Errorf("AutoEdges = %+v, want one edge from the nearest of %v", edges, want)
	}

	g := &File{Path: "/etc//motd", Source: "/srv/motd"}
	if got := g.UIDs(); got[0].Key != "/etc/motd" {
		t.Errorf("UIDs of an unclean path: %v", got)
	}
	edges, err = g.AutoEdges(context.Background())
	must(t, err)
	if len(edges) != 2 || !slices.Equal(edges[1].UIDs, []engine.UID{{Kind: "file", Key: "/srv/motd"}}) {
		t.Errorf("AutoEdges with a source = %+v", edges)
	}
	root := &File{Path: "/"}
	if got := root.UIDs(); got[0].Key != "/" {
		t.Errorf("UIDs of / = %v", got)
	}
	if edges, _ := root.AutoEdges(context.Background()); len(edges) != 0 {
		t.Errorf("AutoEdges of / = %v", edges)
	}
}

func TestCollect(t *testing.T) {
	tests := []struct {
		res     File
		pattern string
		want    string // the collected path; "" means refused
	}{
		{File{Path: "/tmp/mgmtB/f3b", Content: ptr("x")}, "/tmp/mgmtA/", "/tmp/mgmtA/f3b"},
		{File{Path: "/tmp/mgmtB/f3b", Content: ptr("x")}, "/tmp/mgmtA", "/tmp/mgmtA/f3b"},
		{File{Path: "/etc/passwd", Content: ptr("x")}, "/tmp/in", "/tmp/in/passwd"},
		{File{Path: "/srv/dir/", Mode: "0755"}, "/tmp/in/", "/tmp/in/dir/"},
		{File{Path: "/srv/...", Content: ptr("x")}, "/tmp/in", "/tmp/in/..."},
		{File{Path: "/x/gone", State: StateAbsent}, "/tmp/in", "/tmp/in/gone"},
		{File{Path: "/", Content: ptr("x")}, "/tmp/in", ""},
		{File{Path: "/a/..", Content: ptr("x")}, "/tmp/in", ""},
		{File{Path: "/a/../..", Content: ptr("x")}, "/tmp/in", ""},
		{File{Path: "relative/../../etc/shadow", Content: ptr("x")}, "/tmp/in", ""},
		{File{Path: "/etc/shadow", Content: ptr("x")}, "relative/dir", ""},
		{File{Path: "/etc/shadow", Content: ptr("x")}, "", ""},
		{File{Path: "/etc/hosts", Source: "/etc/shadow"}, "/tmp/in", ""},
		{File{Path: "/bin/sh", Content: ptr("x"), Mode: "4755"}, "/tmp/in", ""},
		{File{Path: "/bin/sh", Content: ptr("x"), Mode: "2755"}, "/tmp/in", ""},
		// Resolved when applied, as a local file's owner is: the
		// collecting graph may create the user.
		{File{Path: "/etc/x", Content: ptr("x"), Owner: "no-such-user-here"}, "/tmp/in", "/tmp/in/x"},
	}
	for _, tt := range tests {
		res, err := tt.res.Collect(tt.pattern)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Collect(%q) of %q = %q, want refused", tt.pattern, tt.res.Path, res.(*File).Path)
			} else if !errors.Is(err, ErrCollect) {
				t.Errorf("Collect(%q) of %q: %v does not wrap ErrCollect", tt.pattern, tt.res.Path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Collect(%q) of %q: %v", tt.pattern, tt.res.Path, err)
			continue
		}
		c := res.(*File)
		if c.Path != tt.want {
			t.Errorf("Collect(%q) of %q: path %q, want %q", tt.pattern, tt.res.Path, c.Path, tt.want)
		}
		if tt.res.Content != nil && (c.Content == nil || *c.Content != *tt.res.Content || c.Content == tt.res.Content) {
			t.Errorf("Collect of %q: content not copied", tt.res.Path)
		}
	}
}

// TestCollectedSymlinkNotFollowed: a symlink planted where a collected
// file lands is replaced, not written through.
func TestCollectedSymlinkNotFollowed(t *testing.T) {
	in, outside := t.TempDir(), t.TempDir()
	writeFile(t, outside+"/victim", "keep")
	must(t, os.Symlink(outside+"/victim", in+"/f"))
	res, err := (&File{Path: "/elsewhere/f", Content: ptr("collected")}).Collect(in)
	must(t, err)
	apply(t, res.(*File))
	if data, _ := os.ReadFile(outside + "/victim"); string(data) != "keep" {
		t.Errorf("written through the symlink: %q", data)
	}
}

func TestNoopChangesNothing(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root+"/f", "old")
	must(t, os.Mkdir(root+"/d", 0o755))
	before := describe(t, root)
	for _, r := range []*File{
		{Path: root + "/f", Content: ptr("new"), Mode: "0600"},
		{Path: root + "/g/h", Content: ptr("new")},
		{Path: root + "/d/", Mode: "0700"},
		{Path: root + "/f", State: StateAbsent},
		{Path: root + "/d", Content: ptr("x"), Force: true},
	} {
		must(t, r.Validate())
		changed, err := r.CheckApply(context.Background(), false)
		if err != nil || !changed {
			t.Errorf("%s: CheckApply(false) = %v, %v: want a change to report", r.Path, changed, err)
		}
	}
	if got := describe(t, root); got != before {
		t.Errorf("noop changed the machine:\n%s\nwant\n%s", got, before)
	}
}

func TestLargeSourceIsStreamed(t *testing.T) {
	root := t.TempDir()
	src := root + "/big"
	f, err := os.Create(src)
	must(t, err)
	must(t, f.Truncate(256<<20)) // sparse: 256 MiB of zeros
	must(t, f.Close())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	apply(t, &File{Path: root + "/copy", Source: src})
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("copying 256 MiB allocated %d MiB", alloc>>20)
	}
	a, b := sumFile(t, src), sumFile(t, root+"/copy")
	if a != b {
		t.Error("copy differs from the source")
	}
}

func sumFile(t *testing.T, p string) string {
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// An owner or group unknown when the graph is parsed is accepted, resolved
// when applied (the check reports it missing, naming the parameter), and
// orders the file after the user and group resources that would create
// them.
func TestOwnerResolvedWhenApplied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	for _, tt := range []struct {
		res  File
		want string
	}{
		{File{Path: path, Owner: "no-such-user-here"}, `owner: "no-such-user-here": unknown on this host: want a user name known on this host or a numeric uid (a user resource of the graph that creates it is applied first)`},
		{File{Path: path, GroupName: "no-such-group-here"}, `group: "no-such-group-here": unknown on this host: want a group name known on this host or a numeric gid (a group resource of the graph that creates it is applied first)`},
	} {
		r := tt.res
		if err := r.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		_, err := r.CheckApply(context.Background(), false)
		if err == nil || err.Error() != tt.want {
			t.Errorf("CheckApply = %v, want %s", err, tt.want)
		}
		if !errors.Is(err, errUnknown) {
			t.Errorf("CheckApply's error does not wrap errUnknown: %v", err)
		}
	}
	r := File{Path: "/srv/x", Owner: "www", GroupName: "web"}
	edges, err := r.AutoEdges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []engine.UID
	for _, e := range edges {
		if !e.Before && len(e.UIDs) == 1 && e.UIDs[0].Kind != "file" {
			got = append(got, e.UIDs[0])
		}
	}
	want := []engine.UID{{Kind: "user", Key: "www"}, {Kind: "group", Key: "web"}}
	if !slices.Equal(got, want) {
		t.Errorf("owner edges %v, want %v", got, want)
	}
}
