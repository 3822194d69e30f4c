package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mgmtconfig/mgmt/engine"
	"golang.org/x/sys/unix"
)

// ErrInTheWay is wrapped by the errors of CheckApply when something of the
// wrong type (a directory where a file belongs, or the reverse, or a
// non-empty directory to remove) is at the path and force is not set.
var ErrInTheWay = errors.New("in the way: set force: true to replace it")

// Permissions of what the resource creates when mode does not say.
const (
	defaultFileMode = 0o644
	defaultDirMode  = 0o755
)

// CheckApply compares the path with the declared state and, with apply,
// makes them equal. Content is compared byte for byte, never by time
// stamps; new content is written to a temporary file beside the path,
// synced, given its mode and owner, and renamed over the path.
func (r *File) CheckApply(ctx context.Context, apply bool) (bool, error) {
	return r.checkApply(ctx, apply, nil, (*File).owner)
}

// checkApply is CheckApply, with the new file's write left to the batch b
// of a group when b is not nil, and owner resolving the owner and group.
func (r *File) checkApply(ctx context.Context, apply bool, b *batch, owner func(*File) (int, int, error)) (bool, error) {
	s, err := r.spec()
	if err != nil {
		return false, err
	}
	uid, gid := -1, -1
	if !s.absent {
		if uid, gid, err = owner(r); err != nil {
			return false, err
		}
	}
	a := &applier{ctx: ctx, apply: apply, log: r.logger(), force: s.force, batch: b}
	if apply {
		// Leftovers of a crash beside the path go even when nothing is
		// written there: a rewrite killed midway leaves its temporary
		// file beside a path that may hold the wanted content already.
		a.sweep(filepath.Dir(s.path))
	}
	switch {
	case s.absent:
		return a.absent(s.path)
	case s.dir:
		changed, err := a.dir(s.path, attrs{mode: s.mode, hasMode: s.hasMode, uid: uid, gid: gid})
		if err != nil || !s.recurse {
			return changed, err
		}
		c, err := a.tree(s.source, s.path, uid, gid, s.purge)
		return changed || c, err
	default:
		want := attrs{mode: s.mode, hasMode: s.hasMode, uid: uid, gid: gid}
		var src source
		switch {
		case s.hasCont:
			src = bytesSource(s.content)
		case s.source != "":
			src = fileSource(s.source)
		}
		return a.file(s.path, src, want)
	}
}

// applier carries what one CheckApply needs.
type applier struct {
	ctx   context.Context
	apply bool
	force bool
	log   *slog.Logger
	// entry, while a tree's entry is checked, gathers what differs about
	// it: a tree reports one change per entry, not one per property.
	entry *treeEntry
	// batch, in a group's check, collects the new files written, which the
	// group makes durable and renames together (group.go).
	batch *batch
}

// treeEntry is what differs about one entry of a tree.
type treeEntry struct {
	added bool
	props []string
}

// report reports a change found by the check (engine.Changed), or adds it
// to the tree entry being checked.
func (a *applier) report(c engine.Change) {
	if e := a.entry; e != nil {
		if c.Property == "state" && c.From == "absent" {
			e.added = true
		}
		if !slices.Contains(e.props, c.Property) {
			e.props = append(e.props, c.Property)
		}
		return
	}
	engine.Changed(a.ctx, c)
}

// attrChanges are the changes of mode and owner that giving the path of
// status st the attributes want makes.
func attrChanges(st *unix.Stat_t, want attrs, chown bool) []engine.Change {
	var cs []engine.Change
	if want.uid >= 0 && uint32(want.uid) != st.Uid {
		cs = append(cs, engine.Change{Property: "owner", From: userName(int(st.Uid)), To: userName(want.uid)})
	}
	if want.gid >= 0 && uint32(want.gid) != st.Gid {
		cs = append(cs, engine.Change{Property: "group", From: groupName(int(st.Gid)), To: groupName(want.gid)})
	}
	if want.hasMode && (st.Mode&0o7777 != want.mode || (chown && want.mode&0o6000 != 0)) {
		c := engine.Change{Property: "mode", From: fmt.Sprintf("%04o", st.Mode&0o7777), To: fmt.Sprintf("%04o", want.mode)}
		if c.From == c.To {
			c.Why = "set again after the change of owner, which clears setuid and setgid"
		}
		cs = append(cs, c)
	}
	return cs
}

// userName shows a uid as "name (uid)", or the number alone when the
// host has no name for it.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (%d)", u.Username, uid)
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return fmt.Sprintf("%s (%d)", g.Name, gid)
	}
	return strconv.Itoa(gid)
}

// attrs are the managed attributes of a path.
type attrs struct {
	mode    uint32
	hasMode bool
	uid     int // -1: not managed
	gid     int // -1: not managed
}

// source is wanted content: it opens a reader and tells its size, or -1
// where the size cannot be known without reading it all.
type source interface {
	open() (io.ReadCloser, int64, error)
}

type bytesSource []byte

func (b bytesSource) open() (io.ReadCloser, int64, error) {
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// fileSource is a local file to copy. Its size is never trusted: procfs,
// sysfs and the like report 0 or 4096 whatever they hold, so it is always
// compared and copied by reading it to its end.
type fileSource string

func (f fileSource) open() (io.ReadCloser, int64, error) {
	fd, err := openSource(string(f))
	if err != nil {
		return nil, 0, fmt.Errorf("source: %w", err)
	}
	return &sourceReader{fd: fd, path: string(f)}, -1, nil
}

// openSource opens a source for reading; a variable so that a test can
// hand the reader a descriptor whose read would block.
var openSource = openRegular

// ErrSourceWouldBlock is wrapped by the error of a read from a source
// that has nothing to give now (EAGAIN): /proc/kmsg and the like are
// regular files whose read can wait forever.
var ErrSourceWouldBlock = errors.New("source would block")

// sourceReader reads a source opened by openRegular with plain read(2)
// calls. The descriptor keeps O_NONBLOCK, which regular disk files ignore
// and files that can block honour; an os.File is not used because it
// would park a read of a pollable file in the runtime poller instead of
// returning EAGAIN.
type sourceReader struct {
	fd   int
	path string
}

func (r *sourceReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(r.fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, fmt.Errorf("%s: %w", r.path, ErrSourceWouldBlock)
		case err != nil:
			return 0, pathErr("read", r.path, err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (r *sourceReader) Close() error {
	return unix.Close(r.fd)
}

// errNotRegular is wrapped by the errors of openRegular for a path that is
// not a regular file.
var errNotRegular = errors.New("want a regular file")

// openRegular opens path, following symbolic links, for reading, and only
// if it is a regular file. The type is checked before the open (a device's
// open can have side effects) and again on the open file, which is opened
// with O_NONBLOCK so that a fifo put there meanwhile cannot block it. The
// descriptor keeps O_NONBLOCK: a regular file whose read can block and
// that honours the flag (/proc/kmsg) then returns EAGAIN instead of
// hanging CheckApply.
func openRegular(path string) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return -1, pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, fmt.Errorf("%s is a %s: %w", path, typeName(fileMode(st.Mode)), errNotRegular)
	}
	return openChecked(path)
}

// openChecked is the second half of openRegular: the open, which cannot
// block, and the check of what was opened.
func openChecked(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, pathErr("open", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, pathErr("stat", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, fmt.Errorf("%s is a %s: %w", path, typeName(fileMode(st.Mode)), errNotRegular)
	}
	return fd, nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file"
	}
}

func pathErr(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// file makes path a regular file with the content of src (nil: content not
// managed) and the attributes want.
func (a *applier) file(path string, src source, want attrs) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	var st unix.Stat_t
	if err == nil {
		defer unix.Close(fd)
		err = unix.Fstat(fd, &st)
	}
	replaceDir := false
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG:
		// A regular file: compare its content.
		if src != nil {
			same, err := sameContent(fd, st.Size, src)
			if err != nil {
				return false, err
			}
			if !same {
				a.reportContent(path, fd, &st, src, want)
				for _, c := range attrChanges(&st, want, false) {
					a.report(c)
				}
				return a.write(path, src, want, &st, false, "content differs")
			}
		}
		return a.fixAttrs(fd, path, &st, want)
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if !a.force {
			return false, fmt.Errorf("%s is a directory, the resource wants a file: %w", path, ErrInTheWay)
		}
		replaceDir = true
	case err == nil:
		// A device, fifo or socket: replaced by the file.
	case errors.Is(err, unix.ELOOP):
		// A symbolic link: replaced, never written through.
	case errors.Is(err, unix.ENOENT):
	default:
		return false, pathErr("open", path, err)
	}
	c := engine.Change{Property: "state", From: "absent", To: "file", Why: "missing"}
	if err == nil {
		c.From, c.Why = typeName(fileMode(st.Mode)), "in the way of the file"
	} else if errors.Is(err, unix.ELOOP) {
		c.From, c.Why = "symbolic link", "in the way of the file: replaced, not followed"
	}
	a.report(c)
	if src == nil {
		src = bytesSource(nil)
	} else {
		a.reportContent(path, -1, nil, src, want)
	}
	return a.write(path, src, want, nil, replaceDir, "missing or not a regular file")
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// sameContent compares the open file fd (of size size) with src.
func sameContent(fd int, size int64, src source) (bool, error) {
	if b, ok := src.(bytesSource); ok {
		if int64(len(b)) != size {
			return false, nil
		}
		if size == 0 {
			return true, nil
		}
		if len(b) <= 64<<10 {
			bp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bp)
			buf := (*bp)[:len(b)]
			n, err := unix.Pread(fd, buf, 0)
			if err != nil {
				return false, fmt.Errorf("read: %w", err)
			}
			return n == len(b) && bytes.Equal(buf, b), nil
		}
	}
	rc, srcSize, err := src.open()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	if srcSize >= 0 && srcSize != size {
		return false, nil
	}
	f := io.NewSectionReader(fdReaderAt(fd), 0, size+1)
	return sameStream(f, rc)
}

type fdReaderAt int

func (fd fdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), p, off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// sameStream compares two readers to their ends.
func sameStream(x, y io.Reader) (bool, error) {
	bx, by := bufPool.Get().(*[]byte), bufPool.Get().(*[]byte)
	defer bufPool.Put(bx)
	defer bufPool.Put(by)
	for {
		nx, errx := io.ReadFull(x, *bx)
		ny, erry := io.ReadFull(y, (*by)[:len(*bx)])
		if errx != nil && !errors.Is(errx, io.EOF) && !errors.Is(errx, io.ErrUnexpectedEOF) {
			return false, errx
		}
		if erry != nil && !errors.Is(erry, io.EOF) && !errors.Is(erry, io.ErrUnexpectedEOF) {
			return false, erry
		}
		if nx != ny || !bytes.Equal((*bx)[:nx], (*by)[:ny]) {
			return false, nil
		}
		if errx != nil || erry != nil {
			return errx != nil && erry != nil, nil
		}
	}
}

// fixAttrs gives the open file or directory fd the wanted mode and owner.
func (a *applier) fixAttrs(fd int, path string, st *unix.Stat_t, want attrs) (bool, error) {
	uid, gid := -1, -1
	if want.uid >= 0 && uint32(want.uid) != st.Uid {
		uid = want.uid
	}
	if want.gid >= 0 && uint32(want.gid) != st.Gid {
		gid = want.gid
	}
	chown := uid >= 0 || gid >= 0
	// chown clears setuid and setgid, so the mode is set again after it.
	chmod := want.hasMode && (st.Mode&0o7777 != want.mode || (chown && want.mode&0o6000 != 0))
	if !chown && !chmod {
		return false, nil
	}
	for _, c := range attrChanges(st, want, chown) {
		a.report(c)
	}
	if !a.apply {
		return true, nil
	}
	if chown {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return false, pathErr("chown", path, err)
		}
		a.log.Debug("owner changed", "path", path, "uid", want.uid, "gid", want.gid, "was", fmt.Sprintf("%d:%d", st.Uid, st.Gid))
	}
	if chmod {
		if err := unix.Fchmod(fd, want.mode); err != nil {
			return false, pathErr("chmod", path, err)
		}
		a.log.Debug("mode changed", "path", path, "mode", fmt.Sprintf("%04o", want.mode), "was", fmt.Sprintf("%04o", st.Mode&0o7777))
	}
	return true, nil
}

// write replaces path atomically with the content of src. The mode and
// owner are want's, or those of the regular file being replaced (old), or
// 0644 and the process's own. In a batch (a group's check), the new file is
// only prepared: the batch makes it durable and renames it with the others.
func (a *applier) write(path string, src source, want attrs, old *unix.Stat_t, replaceDir bool, why string) (bool, error) {
	if !a.apply {
		return true, nil
	}
	if err := a.ctx.Err(); err != nil {
		return false, err
	}
	p, err := a.prepare(path, src, want, old, replaceDir, why)
	if err != nil {
		return false, err
	}
	if a.batch != nil {
		a.batch.add(p)
		return true, nil
	}
	if err := p.commit(a.log); err != nil {
		return p.renamed, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return true, err
	}
	p.logWritten(a.log)
	return true, nil
}

// pending is a new file written beside its path, not yet durable nor
// renamed over the path.
type pending struct {
	path, tmp  string
	written    unix.Stat_t // of tmp, to check that the rename put it at path
	replaceDir bool
	renamed    bool

	// for the log
	why  string
	n    int64
	sum  string
	mode uint32

	member int // the group member it belongs to
}

// prepare writes the content of src to a new temporary file beside path,
// with its mode and owner, syncs it (outside a batch) and closes it.
func (a *applier) prepare(path string, src source, want attrs, old *unix.Stat_t, replaceDir bool, why string) (*pending, error) {
	mode, uid, gid := uint32(defaultFileMode), want.uid, want.gid
	switch {
	case want.hasMode:
		mode = want.mode
	case old != nil:
		mode = old.Mode & 0o7777
	}
	rc, _, err := src.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()

	fd, tmp, err := a.createTemp(path)
	if err != nil {
		return nil, err
	}
	p := &pending{path: path, tmp: tmp, replaceDir: replaceDir, why: why, mode: mode}
	h := sha256.New()
	p.n, err = copyTo(fd, rc, h)
	if err == nil {
		uid, gid, err = ownerFor(fd, uid, gid, old)
	}
	if err == nil && (uid >= 0 || gid >= 0) {
		err = wrap("chown", unix.Fchown(fd, uid, gid))
	}
	if err == nil {
		err = wrap("chmod", unix.Fchmod(fd, mode))
	}
	if err == nil && a.batch == nil {
		err = wrap("fsync", unix.Fsync(fd))
	}
	if err == nil {
		err = wrap("stat", unix.Fstat(fd, &p.written))
	}
	// The lock of the temporary file (see createTemp) is held by a
	// duplicate up to the rename: closing fd alone would drop it.
	if lock, derr := unix.Dup(fd); derr == nil {
		defer unix.Close(lock)
	} else if err == nil {
		err = wrap("dup", derr)
	}
	if cerr := unix.Close(fd); err == nil {
		err = wrap("close", cerr)
	}
	if err != nil {
		_ = unix.Unlink(tmp)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	p.sum = shortSum(h)
	return p, nil
}

// fsync makes the new file of a batch durable (outside a batch, prepare
// syncs it before closing it). It opens the file again, without following
// a link, and checks that it is the file written before its fsync: fsync
// writes back the inode's data whichever descriptor asks.
func (p *pending) fsync() error {
	fd, err := unix.Open(p.tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", p.path, pathErr("open", p.tmp, err))
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("write %s: %w", p.path, pathErr("stat", p.tmp, err))
	}
	if st.Dev != p.written.Dev || st.Ino != p.written.Ino {
		return fmt.Errorf("write %s: %s: %w", p.path, p.tmp, errReplaced)
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("write %s: %w", p.path, wrap("fsync", err))
	}
	return nil
}

// abort removes the temporary file.
func (p *pending) abort() { _ = unix.Unlink(p.tmp) }

// commit renames the durable new file over its path (after removing the
// directory in its way, with force) and checks that the path holds it.
func (p *pending) commit(log *slog.Logger) error {
	var err error
	if p.replaceDir {
		if err = os.RemoveAll(p.path); err == nil {
			log.Info("directory removed to make way for a file", "path", p.path)
		}
	}
	if err == nil {
		err = wrap("rename", unix.Rename(p.tmp, p.path))
	}
	if err != nil {
		p.abort()
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	p.renamed = true
	if err := sameInode(p.path, &p.written); err != nil {
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	return nil
}

func (p *pending) logWritten(log *slog.Logger) {
	log.Debug("file written", "path", p.path, "why", p.why, "bytes", p.n, "sha256", p.sum, "mode", fmt.Sprintf("%04o", p.mode))
}

// ownerFor returns the owner to give the new file fd: the managed one, else
// that of the file it replaces (old), -1 where fd already has it.
func ownerFor(fd, uid, gid int, old *unix.Stat_t) (int, int, error) {
	if old == nil || (uid >= 0 && gid >= 0) {
		return uid, gid, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, -1, wrap("stat", err)
	}
	if uid < 0 && old.Uid != st.Uid {
		uid = int(old.Uid)
	}
	if gid < 0 && old.Gid != st.Gid {
		gid = int(old.Gid)
	}
	return uid, gid, nil
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

func shortSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil))[:12] }

// mkdirParents creates dir and the directories above it that are missing,
// each with mode 0755 whatever the umask.
func (a *applier) mkdirParents(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		err := unix.Stat(d, &st)
		if err == nil {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return pathErr("mkdir", d, unix.ENOTDIR)
			}
			break
		}
		if !errors.Is(err, unix.ENOENT) {
			return pathErr("stat", d, err)
		}
		missing = append(missing, d)
		if d == "/" {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return pathErr("mkdir", d, err)
		}
		if err := unix.Chmod(d, defaultDirMode); err != nil {
			return pathErr("chmod", d, err)
		}
		a.log.Info("parent directory created", "path", d, "mode", fmt.Sprintf("%04o", defaultDirMode))
	}
	return nil
}

// copyTo writes everything from r to fd, and to h.
func copyTo(fd int, r io.Reader, h hash.Hash) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	var total int64
	for {
		n, rerr := r.Read(*bp)
		if n > 0 {
			h.Write((*bp)[:n])
			for b := (*bp)[:n]; len(b) > 0; {
				w, err := unix.Write(fd, b)
				if err != nil {
					if errors.Is(err, unix.EINTR) {
						continue
					}
					return total, fmt.Errorf("write: %w", err)
				}
				b = b[w:]
				total += int64(w)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, fmt.Errorf("read: %w", rerr)
		}
	}
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return pathErr("fsync", dir, err)
	}
	return nil
}

// dir makes path a directory with the attributes want.
func (a *applier) dir(path string, want attrs) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return false, pathErr("stat", path, err)
		}
		return a.fixAttrs(fd, path, &st, want)
	}
	var st unix.Stat_t
	switch lerr := unix.Lstat(path, &st); {
	case errors.Is(lerr, unix.ENOENT):
	case lerr != nil:
		return false, pathErr("lstat", path, lerr)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		// A symbolic link: replaced, never followed.
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		if !a.force {
			return false, fmt.Errorf("%s is a %s, the resource wants a directory: %w", path, typeName(fileMode(st.Mode)), ErrInTheWay)
		}
	default:
		return false, pathErr("open", path, err)
	}
	c := engine.Change{Property: "state", From: "absent", To: "directory", Why: "missing"}
	if !errors.Is(err, unix.ENOENT) {
		c.From, c.Why = typeName(fileMode(st.Mode)), "in the way of the directory"
	}
	a.report(c)
	if !a.apply {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		if err := a.mkdirParents(filepath.Dir(path)); err != nil {
			return false, err
		}
	} else {
		if err := unix.Unlink(path); err != nil {
			return false, pathErr("remove", path, err)
		}
		a.log.Info("removed to make way for a directory", "path", path)
	}
	mode := uint32(defaultDirMode)
	if want.hasMode {
		mode = want.mode
	}
	if err := a.mkdir(path, mode, want.uid, want.gid); err != nil {
		return false, err
	}
	return true, syncDir(filepath.Dir(path))
}

// mkdir creates the directory path with exactly mode, and the owner given.
func (a *applier) mkdir(path string, mode uint32, uid, gid int) error {
	if err := unix.Mkdir(path, 0o700); err != nil {
		return pathErr("mkdir", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", path, err)
	}
	defer unix.Close(fd)
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return pathErr("chown", path, err)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return pathErr("chmod", path, err)
	}
	a.log.Debug("directory created", "path", path, "mode", fmt.Sprintf("%04o", mode))
	return nil
}

func fileMode(m uint32) fs.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFREG:
		return 0
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	default:
		return fs.ModeDevice
	}
}

// absent removes whatever is at path: a file, a link (not its target), an
// empty directory; a non-empty directory only with force.
func (a *applier) absent(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return false, nil
		}
		return false, pathErr("lstat", path, err)
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && !a.force {
		empty, err := emptyDir(path)
		if err != nil {
			return false, err
		}
		if !empty {
			return false, fmt.Errorf("%s is a directory that is not empty: %w", path, ErrInTheWay)
		}
	}
	a.report(engine.Change{Property: "state", From: typeName(fileMode(st.Mode)), To: "absent", Why: "state: absent"})
	if !a.apply {
		return true, nil
	}
	var err error
	switch {
	case isDir && a.force:
		err = os.RemoveAll(path)
	case isDir:
		err = wrap("rmdir", unix.Rmdir(path))
	default:
		err = wrap("remove", unix.Unlink(path))
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	a.log.Debug("removed", "path", path, "was", typeName(fileMode(st.Mode)))
	return true, syncDir(filepath.Dir(path))
}

func emptyDir(path string) (bool, error) {
	f, err := openDir(path, true)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// openDir opens the directory path with O_DIRECTORY, so that whatever else
// is there (a fifo above all) is refused without being opened; with
// noFollow, a symbolic link is refused too.
func openDir(path string, noFollow bool) (*os.File, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if noFollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readDir lists the directory path (following a symbolic link at path
// itself, as os.ReadDir does), sorted by name, opened as openDir does.
func readDir(path string) ([]os.DirEntry, error) {
	f, err := openDir(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// reportContent reports that the content of path (open as fd, of status
// cur; fd -1 and cur nil: there is none) would become src's: both sizes and
// hashes, and a bounded unified diff when both are text that everyone may
// read. A file that is not world-readable, now or once written, never has
// its content in a diff: the log and report may be read by more people.
func (a *applier) reportContent(path string, fd int, cur *unix.Stat_t, src source, want attrs) {
	if !engine.Recording(a.ctx) {
		return
	}
	c := engine.Change{Property: "content", Why: "content differs"}
	if a.entry != nil {
		a.report(c) // a tree's entry: which properties differ is enough
		return
	}
	var old []byte
	if fd >= 0 {
		r := io.NewSectionReader(fdReaderAt(fd), 0, cur.Size+1)
		var err error
		c.From, old, err = summarize(r)
		if err != nil {
			c.Why = fmt.Sprintf("content differs (the current content cannot be read: %v)", err)
		}
	}
	rc, _, err := src.open()
	if err != nil {
		a.report(c) // the write reports the error
		return
	}
	var wanted []byte
	c.To, wanted, err = summarize(rc)
	rc.Close()
	if err != nil {
		a.report(c)
		return
	}
	mode := uint32(defaultFileMode)
	switch {
	case want.hasMode:
		mode = want.mode
	case cur != nil:
		mode = cur.Mode & 0o7777
	}
	switch {
	case cur != nil && cur.Mode&0o004 == 0:
		c.Why = fmt.Sprintf("content differs (no diff: the file, mode %04o, is not world-readable)", cur.Mode&0o7777)
	case mode&0o004 == 0:
		c.Why = fmt.Sprintf("content differs (no diff: the file will have mode %04o, not world-readable)", mode)
	case len(old) > maxDiffInput || len(wanted) > maxDiffInput:
		c.Why = fmt.Sprintf("content differs (too large to diff: over %d KiB)", maxDiffInput>>10)
	default:
		diff, why := unifiedDiff(path, old, wanted)
		switch {
		case why == "binary":
			c.Why = "binary content differs"
		case why != "":
			c.Why = "content differs (" + why + ")"
		}
		c.Diff = diff
	}
	a.report(c)
}

// summarize reads r to its end and returns "N bytes, sha256 H" and its
// first maxDiffInput+1 bytes (enough to tell it is too large to diff).
func summarize(r io.Reader) (string, []byte, error) {
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &capped{&head, maxDiffInput + 1}), r)
	return fmt.Sprintf("%d bytes, sha256 %s", n, shortSum(h)), head.Bytes(), err
}

// capped keeps the first n bytes written to it and drops the rest.
type capped struct {
	b *bytes.Buffer
	n int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.n - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
