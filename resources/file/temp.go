package file

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Temporary files. New content is written to a file beside the path and
// renamed over it. The temporary file's name is unpredictable (16 random
// hex digits) and it is created with O_EXCL, so that nothing planted
// beforehand, under whatever name, is ever reused or written through: what
// is renamed over the path is always the file this write created and gave
// its mode and owner. The file is locked (flock) from its creation to its
// rename, so that the lock tells a write under way, in this process or
// another, from what a crash left behind (the kernel drops the lock of a
// killed process). Leftovers are removed by the next run, before its first
// write into that directory and at the first applying check of a resource
// whose path is there (sweep).

const (
	tempSuffix = ".mgmt-tmp"  // .NAME.RANDOM.mgmt-tmp
	tempPrefix = ".mgmt-tmp-" // .mgmt-tmp-HASH.RANDOM, for names too long for the other form
	tempTries  = 8            // names tried before giving up on EEXIST
)

// tempName returns a new, unpredictable name beside path for the temporary
// file that new content is written to.
func tempName(path string) string {
	dir, base := filepath.Split(path)
	var r [8]byte
	_, _ = rand.Read(r[:]) // never fails on Linux
	random := hex.EncodeToString(r[:])
	name := "." + base + "." + random + tempSuffix
	if len(name) > 255 {
		sum := sha256.Sum256([]byte(base))
		name = tempPrefix + hex.EncodeToString(sum[:16]) + "." + random
	}
	return dir + name
}

// IsTemp tells whether a base name has the form of the temporary files the
// resource writes before renaming them over their paths (including the
// fixed names of earlier versions, .NAME.mgmt-tmp). Such names are
// refused as paths of resources, declared or collected: they are removed
// as leftovers.
func IsTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.HasSuffix(base, tempSuffix) || strings.HasPrefix(base, tempPrefix)
}

// swept holds the directories whose leftover temporary files this process
// has removed, each a *sync.Once: the sweep runs before the first
// temporary file of this process is created there, so it can only remove
// files an earlier run left behind.
var swept sync.Map

// sweep removes, once per directory and process, the temporary files an
// earlier run left in dir (a crash between create and rename). Only
// regular files and symbolic links with a temporary name are removed.
func (a *applier) sweep(dir string) {
	once, _ := swept.LoadOrStore(dir, new(sync.Once))
	once.(*sync.Once).Do(func() {
		entries, err := readDir(dir)
		if err != nil {
			return // a missing directory has nothing left in it
		}
		for _, e := range entries {
			if !IsTemp(e.Name()) || !(e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			// A symbolic link cannot be locked; one being made lives
			// for microseconds between its creation and its rename.
			if e.Type().IsRegular() && removeUnlocked(p) ||
				!e.Type().IsRegular() && unix.Unlink(p) == nil {
				a.log.Info("leftover temporary file removed", "path", p)
			}
		}
	})
}

// removeUnlocked removes the temporary file p if no writer holds its lock,
// and tells whether it did. The name is removed while the lock is held,
// and only if it still names the file locked.
func removeUnlocked(p string) bool {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false // a write under way
	}
	var locked, now unix.Stat_t
	if unix.Fstat(fd, &locked) != nil || unix.Lstat(p, &now) != nil ||
		locked.Dev != now.Dev || locked.Ino != now.Ino {
		return false
	}
	return unix.Unlink(p) == nil
}

// createTemp creates, with O_EXCL, a new temporary file beside path, and
// the missing parent directories. It returns the open file, locked (see
// above) until it is closed, and its name.
func (a *applier) createTemp(path string) (int, string, error) {
	dir := filepath.Dir(path)
	a.sweep(dir)
	var err error
	for try := 0; try < tempTries; try++ {
		tmp := tempName(path)
		var fd int
		fd, err = unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			// Locked before a sweep of another process could take it for
			// a leftover; one that removed it before the lock: another name.
			var st unix.Stat_t
			if err = unix.Flock(fd, unix.LOCK_EX); err == nil {
				err = unix.Fstat(fd, &st)
			}
			if err != nil {
				unix.Close(fd)
				_ = unix.Unlink(tmp)
				return -1, "", pathErr("lock", tmp, err)
			}
			if st.Nlink > 0 {
				return fd, tmp, nil
			}
			unix.Close(fd)
			continue
		}
		switch {
		case errors.Is(err, unix.EEXIST):
			continue // another name
		case errors.Is(err, unix.ENOENT) && try == 0:
			if err := a.mkdirParents(dir); err != nil {
				return -1, "", err
			}
		default:
			return -1, "", pathErr("create", tmp, err)
		}
	}
	return -1, "", pathErr("create", dir, err)
}

// createTempLink creates a new symbolic link to target beside path, for
// renaming over it, and returns its name.
func (a *applier) createTempLink(target, path string) (string, error) {
	a.sweep(filepath.Dir(path))
	var err error
	for try := 0; try < tempTries; try++ {
		tmp := tempName(path)
		if err = unix.Symlink(target, tmp); err == nil {
			return tmp, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", pathErr("symlink", tmp, err)
		}
	}
	return "", pathErr("symlink", path, err)
}

// errReplaced is wrapped by the error of a write whose file was replaced
// by another between its creation and its rename over the path.
var errReplaced = errors.New("replaced by another file during the write")

// sameInode checks that path is the file written (of stat st).
func sameInode(path string, st *unix.Stat_t) error {
	var now unix.Stat_t
	if err := unix.Lstat(path, &now); err != nil {
		return pathErr("lstat", path, err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("%s: %w", path, errReplaced)
	}
	return nil
}
