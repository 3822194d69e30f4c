package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBundleRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"site.yaml":         "resources: {}\n",
		"files/motd":        "hello\n",
		"tree/a/b.conf":     "b\n",
		"tree/c.conf":       "c\n",
		"not-referred-to":   "left out\n",
		"files/unreferred2": "left out\n",
	})
	if err := os.Chmod(filepath.Join(src, "files/motd"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := BundleSpec{Graph: filepath.Join(src, "site.yaml"), Local: []LocalFile{
		{Path: filepath.Join(src, "files/motd"), By: "site.yaml:3:5: file[motd]"},
		{Path: filepath.Join(src, "tree"), By: "site.yaml:7:5: file[tree]"},
	}}
	b1, err := Bundle(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic: new modification times change nothing.
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(src, "files/motd"), future, future)
	b2, err := Bundle(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatal("two bundles of the same files differ")
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := Unpack(b1, dst); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, rel)
		}
		return nil
	})
	want := []string{"files/motd", "graph.yaml", "tree/a/b.conf", "tree/c.conf"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("unpacked %v, want %v", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dst, "files/motd")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("files/motd: %v %v, want mode 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "graph.yaml")); string(b) != "resources: {}\n" {
		t.Errorf("graph.yaml = %q", b)
	}
	// The whole tree with Dir.
	b3, err := Bundle(BundleSpec{Graph: filepath.Join(src, "site.yaml"), Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	dst3 := filepath.Join(t.TempDir(), "out")
	if err := Unpack(b3, dst3); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"graph.yaml", "site.yaml", "not-referred-to", "files/unreferred2"} {
		if _, err := os.Stat(filepath.Join(dst3, f)); err != nil {
			t.Errorf("--dir bundle: %v", err)
		}
	}
}

func TestBundleRefuses(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret": "x"})
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"graph.yaml": "g", "in": "i", "sub/graph.yaml": "g2"})
	graph := filepath.Join(src, "graph.yaml")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(src, "out-link")))
	must(os.Symlink("in", filepath.Join(src, "in-link")))
	must(syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	big, err := os.Create(filepath.Join(src, "sub", "big"))
	must(err)
	must(big.Truncate(MaxBundle + 1)) // sparse: no disk used
	big.Close()
	local := func(name string) BundleSpec {
		return BundleSpec{Graph: graph, Local: []LocalFile{{Path: filepath.Join(src, name), By: "graph.yaml:3:5: file[x]"}}}
	}
	for _, tc := range []struct {
		name string
		spec BundleSpec
		want string
	}{
		{"outside", BundleSpec{Graph: graph, Local: []LocalFile{{Path: filepath.Join(outside, "secret"), By: "graph.yaml:3:5: file[x]"}}}, "graph.yaml:3:5: file[x]: " + filepath.Join(outside, "secret") + " is not below"},
		{"dotdot", local("../x"), "is not below"},
		{"symlink out", local("out-link"), "out-link: a symlink to " + filepath.Join(outside, "secret") + ", outside"},
		{"fifo", local("fifo"), "fifo: a FIFO, not a regular file"},
		{"missing", local("nope"), "graph.yaml:3:5: file[x]: lstat"},
		{"too big", local("sub/big"), "big: the files come to more than 64 MiB"},
		{"dir: fifo or big in it", BundleSpec{Graph: graph, Dir: src}, "not a regular file or directory"},
		{"dir: graph not at top", BundleSpec{Graph: filepath.Join(src, "sub/graph.yaml"), Dir: src}, "must be a file directly in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Bundle(tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
	// A link to a file inside is stored as that file.
	b, err := Bundle(local("in-link"))
	must(err)
	dst := filepath.Join(t.TempDir(), "u")
	must(Unpack(b, dst))
	if fi, err := os.Lstat(filepath.Join(dst, "in-link")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("in-link unpacked as %v, %v: want a regular file", fi.Mode(), err)
	}
}

// hostile builds a tar.gz from raw headers, as anyone able to write to etcd could.
func hostile(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			// Zeros compress to almost nothing: the bomb.
			chunk := make([]byte, 1<<20)
			for left := h.Size; left > 0; left -= int64(len(chunk)) {
				if _, err := tw.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestUnpackRefusesHostile(t *testing.T) {
	graph := tar.Header{Name: "graph.yaml", Typeflag: tar.TypeReg, Mode: 0o644}
	reg := func(name string, size int64) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
	}
	many := []tar.Header{graph}
	for i := range MaxEntries {
		many = append(many, tar.Header{Name: "d" + strings.Repeat("x", i%7) + "/" + string(rune('a'+i%26)) + "/" + strconv.Itoa(i), Typeflag: tar.TypeReg, Mode: 0o644})
	}
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		want    string
	}{
		{"traversal", []tar.Header{graph, reg("../escape", 1)}, `entry "../escape": want a relative, clean path`},
		{"traversal inside", []tar.Header{graph, reg("a/../../escape", 1)}, `entry "a/../../escape"`},
		{"absolute", []tar.Header{graph, reg("/etc/cron.d/x", 1)}, `entry "/etc/cron.d/x"`},
		{"symlink", []tar.Header{graph, {Name: "etc", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, reg("etc/passwd", 1)}, `entry "etc": type '2': a bundle holds only files and directories`},
		{"hard link", []tar.Header{graph, {Name: "shadow", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}}, `entry "shadow": type '1'`},
		{"device", []tar.Header{graph, {Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}}, `entry "sda": type '4'`},
		{"size bomb", []tar.Header{graph, reg("zeros", MaxBundle+1)}, `entry "zeros": 67108865 bytes`},
		{"sum of sizes", []tar.Header{graph, reg("z1", MaxBundle/2+1), reg("z2", MaxBundle/2+1)}, `entry "z2"`},
		{"twice", []tar.Header{graph, reg("a", 1), reg("a", 1)}, `entry "a" is given twice`},
		{"below a file", []tar.Header{graph, reg("a", 1), reg("a/b", 1)}, `entry "a/b" is below the file "a"`},
		{"no graph", []tar.Header{reg("a", 1)}, "no graph.yaml"},
		{"too many", many, "more than 10000 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := hostile(t, tc.entries...)
			parent := t.TempDir()
			err := Unpack(b, filepath.Join(parent, "u"))
			if !errors.Is(err, ErrBundle) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
			// Nothing was written outside the directory.
			ents, _ := os.ReadDir(parent)
			if len(ents) != 1 {
				t.Errorf("the parent holds %d entries, want only u", len(ents))
			}
		})
	}
	if err := Unpack([]byte("not gzip"), filepath.Join(t.TempDir(), "u")); !errors.Is(err, ErrBundle) {
		t.Errorf("garbage: err = %v, want ErrBundle", err)
	}
}
