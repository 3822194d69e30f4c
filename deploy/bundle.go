package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Bounds of a bundle. It comes from etcd, where anyone allowed to write can
// put anything: Unpack holds every archive to them.
const (
	MaxBundle  = 64 << 20 // bytes, of the files in it and of the archive itself
	MaxEntries = 10000    // files and directories in one bundle
)

// GraphName is the graph's name in a bundle: an agent runs <dir>/graph.yaml.
const GraphName = "graph.yaml"

// ErrBundle reports a bundle that cannot be built or that Unpack refuses;
// the message names the file.
var ErrBundle = errors.New("bad bundle")

// LocalFile is a local file or directory a graph refers to by a relative path.
type LocalFile struct {
	Path string // absolute
	By   string // who refers to it, for messages: "graph.yaml:3:5: file[motd]"
}

// BundleSpec says what goes into a bundle.
type BundleSpec struct {
	// Graph is the graph file; it is stored as graph.yaml.
	Graph string
	// Local are the files (and directory trees) the graph refers to: each
	// must lie below the graph's directory, where it goes in the bundle.
	Local []LocalFile
	// Dir, when set, bundles the whole tree below it instead of Local (Local
	// must still lie in it). Graph must be a file directly in Dir.
	Dir string
}

// Hash is the content hash of a bundle as records hold it: "sha256:<hex>".
func Hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// entry is one file or directory to bundle.
type entry struct {
	src  string // where to read it; "" for a directory
	mode fs.FileMode
	size int64
}

// Bundle builds the deterministic tar.gz of spec: sorted names, zero times,
// owner 0, permission bits kept. The graph's relative sources resolve the
// same way against the unpacked bundle as against the graph's directory.
func Bundle(spec BundleSpec) ([]byte, error) {
	graph, err := filepath.Abs(spec.Graph)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	root := filepath.Dir(graph)
	if spec.Dir != "" {
		if root, err = filepath.Abs(spec.Dir); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if filepath.Dir(graph) != root {
			return nil, fmt.Errorf("%w: %s: with --dir the graph must be a file directly in %s, so that its relative paths resolve against the bundle's top", ErrBundle, spec.Graph, spec.Dir)
		}
	}
	// Symlinks are followed only to files within root, measured from its
	// real path.
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	b := &bundler{root: root, realRoot: realRoot, entries: map[string]entry{}}
	if err := b.addFile(GraphName, graph, spec.Graph); err != nil {
		return nil, err
	}
	for _, l := range spec.Local {
		rel, err := filepath.Rel(root, l.Path)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("%w: %s: %s is not below %s: a bundle holds only files below the graph's directory; give a file already on the target hosts by its absolute path", ErrBundle, l.By, l.Path, root)
		}
		if spec.Dir != "" {
			if _, err := os.Lstat(l.Path); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrBundle, l.By, err)
			}
			continue // the walk of Dir takes it
		}
		if err := b.add(filepath.ToSlash(rel), l.Path, l.By); err != nil {
			return nil, err
		}
	}
	if spec.Dir != "" {
		if err := b.walkDir(root, root, "--dir "+spec.Dir); err != nil {
			return nil, err
		}
	}
	return b.write()
}

type bundler struct {
	root, realRoot string
	entries        map[string]entry // by name in the bundle
	total          int64
}

// add adds the file or directory tree at src as name.
func (b *bundler) add(name, src, by string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBundle, by, err)
	}
	if fi.IsDir() {
		return b.walkDir(src, b.root, by)
	}
	return b.addFile(name, src, by)
}

// walkDir adds the tree below dir, named relative to root.
func (b *bundler) walkDir(dir, root, by string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBundle, by, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBundle, p, err)
		}
		name := filepath.ToSlash(rel)
		if name == "." {
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir // a repository's history is not the tree
			}
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("%w: %s: %w", ErrBundle, p, err)
			}
			return b.put(name, entry{mode: fi.Mode().Perm() | fs.ModeDir}, p)
		}
		return b.addFile(name, p, p)
	})
}

// addFile adds a regular file, or a symlink to a regular file within the
// bundle's root, which is stored as the file it points to.
func (b *bundler) addFile(name, src, by string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBundle, by, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		real, err := filepath.EvalSymlinks(src)
		if err != nil {
			return fmt.Errorf("%w: %s: symlink: %w", ErrBundle, src, err)
		}
		if rel, err := filepath.Rel(b.realRoot, real); err != nil || !filepath.IsLocal(rel) {
			return fmt.Errorf("%w: %s: a symlink to %s, outside %s: bundles hold no links out of their tree", ErrBundle, src, real, b.root)
		}
		if fi, err = os.Stat(real); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBundle, src, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s: a symlink to %s, not a regular file: link files only, or give the directory itself", ErrBundle, src, real)
		}
		src = real
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s: a %s, not a regular file or directory: bundles hold files only", ErrBundle, src, kindOf(fi.Mode()))
	}
	return b.put(name, entry{src: src, mode: fi.Mode().Perm(), size: fi.Size()}, src)
}

func (b *bundler) put(name string, e entry, src string) error {
	if prev, ok := b.entries[name]; ok {
		if prev == e {
			return nil // referred to twice
		}
		if name == GraphName {
			return fmt.Errorf("%w: %s: a file named %s beside the graph would replace it in the bundle: rename one of them", ErrBundle, src, GraphName)
		}
		return fmt.Errorf("%w: %s: %s is in the bundle already (from %s)", ErrBundle, src, name, prev.src)
	}
	if len(b.entries) >= MaxEntries {
		return fmt.Errorf("%w: %s: more than %d files: bundle fewer", ErrBundle, src, MaxEntries)
	}
	b.total += e.size
	if b.total > MaxBundle {
		return fmt.Errorf("%w: %s: the files come to more than %d MiB: a bundle holds at most that; put large files on the hosts another way", ErrBundle, src, MaxBundle>>20)
	}
	b.entries[name] = e
	return nil
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func (b *bundler) write() ([]byte, error) {
	names := make([]string, 0, len(b.entries))
	for n := range b.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, zero time: the same bytes every time
	tw := tar.NewWriter(zw)
	for _, n := range names {
		e := b.entries[n]
		h := &tar.Header{Name: n, Mode: int64(e.mode.Perm()), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if e.mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", n, err)
		}
		if e.mode.IsDir() {
			continue
		}
		if err := copyFile(tw, e.src, e.size); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if buf.Len() > MaxBundle {
		return nil, fmt.Errorf("%w: the archive is %d bytes, more than %d MiB", ErrBundle, buf.Len(), MaxBundle>>20)
	}
	return buf.Bytes(), nil
}

// copyFile copies exactly size bytes of src: a file that changed size since
// it was listed is an error, not a corrupt archive.
func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err == nil && n < size {
		err = fmt.Errorf("%s shrank while being bundled", src)
	}
	if err == nil {
		if m, _ := f.Read(make([]byte, 1)); m > 0 {
			err = fmt.Errorf("%s grew while being bundled", src)
		}
	}
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// Unpack writes the files of bundle into dir, which must not exist or be
// empty. It refuses, naming the entry, what a hostile writer to etcd could
// put there: names that climb out (.., absolute), links of any kind,
// devices, an entry given twice, more than MaxEntries entries or MaxBundle
// bytes. Permission bits are kept; setuid, setgid and sticky bits are not.
func Unpack(bundle []byte, dir string) error {
	if len(bundle) > MaxBundle {
		return fmt.Errorf("%w: %d bytes, more than %d MiB", ErrBundle, len(bundle), MaxBundle>>20)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
		if err == nil {
			err = errors.New("not empty")
		}
		return fmt.Errorf("unpack into %s: %w", dir, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(bundle))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBundle, err)
	}
	return untar(zr, dir, true)
}

// untar is Unpack of a tar stream into the empty directory dir.
func untar(r io.Reader, dir string, needGraph bool) error {
	// The archive's own bytes bound what is read, headers and padding
	// included: a gzip bomb ends here.
	tr := tar.NewReader(io.LimitReader(r, MaxBundle+MaxEntries*2048))
	seen := map[string]bool{} // name -> is a directory
	var dirs []*tar.Header
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBundle, err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader { // git archive's commit id
			continue
		}
		if len(seen) >= MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrBundle, MaxEntries)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !safeName(name) {
			return fmt.Errorf("%w: entry %q: want a relative, clean path inside the bundle", ErrBundle, h.Name)
		}
		if _, dup := seen[name]; dup {
			return fmt.Errorf("%w: entry %q is given twice", ErrBundle, h.Name)
		}
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if isDir, ok := seen[p]; ok && !isDir {
				return fmt.Errorf("%w: entry %q is below the file %q", ErrBundle, h.Name, p)
			}
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			seen[name] = true
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpack %s: %w", name, err)
			}
			dirs = append(dirs, h)
		case tar.TypeReg:
			seen[name] = false
			if h.Size < 0 || h.Size > MaxBundle-total {
				return fmt.Errorf("%w: entry %q: %d bytes: the bundle's files come to more than %d MiB", ErrBundle, h.Name, h.Size, MaxBundle>>20)
			}
			total += h.Size
			if err := writeEntry(tr, target, h); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: entry %q: type %q: a bundle holds only files and directories (no links, devices or FIFOs)", ErrBundle, h.Name, h.Typeflag)
		}
	}
	if _, ok := seen[GraphName]; !ok && needGraph {
		return fmt.Errorf("%w: no %s in it", ErrBundle, GraphName)
	}
	// Modes of directories last, deepest first: a read-only directory is
	// filled before it becomes read-only.
	for i := len(dirs) - 1; i >= 0; i-- {
		target := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(dirs[i].Name, "/")))
		if err := os.Chmod(target, fs.FileMode(dirs[i].Mode)&fs.ModePerm); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
	}
	return nil
}

// safeName is a bundle entry's name as Bundle writes it: relative, clean,
// slash-separated, never climbing out.
func safeName(n string) bool {
	return n != "" && n != "." && path.Clean(n) == n && filepath.IsLocal(filepath.FromSlash(n)) &&
		!strings.ContainsAny(n, "\\\x00")
}

func writeEntry(tr *tar.Reader, target string, h *tar.Header) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("unpack %s: %w", h.Name, err)
	}
	// O_EXCL|O_NOFOLLOW: nothing there yet, and no link followed.
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, fs.FileMode(h.Mode)&fs.ModePerm)
	if err != nil {
		return fmt.Errorf("unpack %s: %w", h.Name, err)
	}
	n, err := io.Copy(f, tr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != h.Size {
		err = fmt.Errorf("%w: entry %q: %d bytes of %d", ErrBundle, h.Name, n, h.Size)
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", h.Name, err)
	}
	// The mode given to OpenFile passed through the umask.
	if err := os.Chmod(target, fs.FileMode(h.Mode)&fs.ModePerm); err != nil {
		return fmt.Errorf("unpack %s: %w", h.Name, err)
	}
	return nil
}
