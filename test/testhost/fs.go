package testhost

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The host's files are reached through /proc/PID/root with openat2 and
// RESOLVE_IN_ROOT, so that a symbolic link inside the host (absolute or
// with "..") resolves inside the host and can never lead to a file of the
// real machine.

// inRoot opens path (absolute, as the host sees it) relative to the host's
// root directory.
func (h *Host) inRoot(p string, flags int, mode uint32) (*os.File, error) {
	if !h.running() {
		return nil, ErrNotRunning
	}
	root, err := os.OpenFile(h.Root(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("testhost: %s root: %w", h.name, err)
	}
	defer root.Close()
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(int(root.Fd()), rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: h.name + ":" + p, Err: err}
	}
	return os.NewFile(uintptr(fd), h.name+":"+p), nil
}

// MkdirAll makes a directory and its parents inside the host.
func (h *Host) MkdirAll(dir string, perm fs.FileMode) error {
	dir = path.Clean("/" + dir)
	if dir == "/" {
		return nil
	}
	d, err := h.inRoot(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		d.Close()
		return nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := h.MkdirAll(path.Dir(dir), perm); err != nil {
		return err
	}
	parent, err := h.inRoot(path.Dir(dir), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	if err := unix.Mkdirat(int(parent.Fd()), path.Base(dir), uint32(perm.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
		return &fs.PathError{Op: "mkdir", Path: h.name + ":" + dir, Err: err}
	}
	return nil
}

// WriteFile writes a file inside the host (into its tmpfs layer), making
// its parent directories.
func (h *Host) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return h.writeFrom(name, strings.NewReader(string(data)), perm)
}

func (h *Host) writeFrom(name string, r io.Reader, perm fs.FileMode) error {
	if err := h.MkdirAll(path.Dir(path.Clean("/"+name)), 0o755); err != nil {
		return err
	}
	f, err := h.inRoot(name, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, uint32(perm.Perm()))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("testhost: writing %s:%s: %w", h.name, name, err)
	}
	// The mode of an existing file is not changed by O_CREAT.
	if err := f.Chmod(perm.Perm()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadFile reads a file inside the host.
func (h *Host) ReadFile(name string) ([]byte, error) {
	f, err := h.inRoot(name, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Remove removes a file or an empty directory inside the host. Removing a
// file of the real root's image leaves a whiteout in the host's tmpfs
// layer; the real file is not touched.
func (h *Host) Remove(name string) error {
	name = path.Clean("/" + name)
	parent, err := h.inRoot(path.Dir(name), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	base := path.Base(name)
	err = unix.Unlinkat(int(parent.Fd()), base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(int(parent.Fd()), base, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return &fs.PathError{Op: "remove", Path: h.name + ":" + name, Err: err}
	}
	return nil
}

// CopyIn copies src (a file or a directory tree of the real machine) to dst
// inside the host, keeping permission bits. Symbolic links are copied as
// links.
func (h *Host) CopyIn(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return h.MkdirAll(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return h.symlink(link, target)
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return h.writeFrom(target, f, info.Mode().Perm())
		default:
			return fmt.Errorf("testhost: CopyIn %s: not a file, directory or link", p)
		}
	})
}

func (h *Host) symlink(oldname, newname string) error {
	newname = path.Clean("/" + newname)
	if err := h.MkdirAll(path.Dir(newname), 0o755); err != nil {
		return err
	}
	parent, err := h.inRoot(path.Dir(newname), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer parent.Close()
	if err := unix.Symlinkat(oldname, int(parent.Fd()), path.Base(newname)); err != nil {
		return &fs.PathError{Op: "symlink", Path: h.name + ":" + newname, Err: err}
	}
	return nil
}

// InstallBinary copies an executable of the real machine to
// /usr/local/bin/NAME inside the host and returns that path.
func (h *Host) InstallBinary(src, name string) (string, error) {
	if name == "" {
		name = filepath.Base(src)
	}
	dst := "/usr/local/bin/" + name
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("testhost: InstallBinary: %w", err)
	}
	defer f.Close()
	if err := h.writeFrom(dst, f, 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

func newMachineID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
