package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"golang.org/x/sys/unix"
)

// tree makes the directory dst hold a copy of the tree src: directories,
// regular files (content and permission bits) and symbolic links (copied as
// links, not followed). uid and gid, when managed, apply to every entry.
// With purge, what dst has and src has not is removed.
func (a *applier) tree(src, dst string, uid, gid int, purge bool) (bool, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("source: %s is a %s, want a directory to copy with recurse", src, typeName(fi.Mode()))
	}
	return a.treeDir(src, dst, uid, gid, purge)
}

func (a *applier) treeDir(src, dst string, uid, gid int, purge bool) (bool, error) {
	if err := a.ctx.Err(); err != nil {
		return false, err
	}
	entries, err := readDir(src)
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	changed := false
	var errs []error
	keep := make(map[string]bool, len(entries))
	for _, e := range entries {
		keep[e.Name()] = true
		sp, dp := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(sp, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				delete(keep, e.Name()) // gone meanwhile: the next event brings us back
				continue
			}
			errs = append(errs, pathErr("lstat", sp, err))
			continue
		}
		want := attrs{mode: st.Mode & 0o7777, hasMode: true, uid: uid, gid: gid}
		var c bool
		ent := &treeEntry{}
		a.entry = ent
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			c, err = a.dir(dp, want)
			a.entry = nil
			a.reportEntry(dp, ent)
			// A noop goes on into a directory it would add, so that
			// it lists every entry the apply would add there.
			if err == nil && (a.apply || !c || ent.added) {
				var cc bool
				cc, err = a.treeDir(sp, dp, uid, gid, purge)
				c = c || cc
			}
		case unix.S_IFREG:
			c, err = a.file(dp, fileSource(sp), want)
		case unix.S_IFLNK:
			c, err = a.link(sp, dp)
		default:
			a.entry = nil
			a.log.Debug("special file in the source not copied", "path", sp)
			delete(keep, e.Name())
			continue
		}
		if a.entry != nil {
			a.entry = nil
			a.reportEntry(dp, ent)
		}
		changed = changed || c
		if err != nil {
			errs = append(errs, err)
		}
	}
	if purge {
		have, err := readDir(dst)
		if err != nil && !(errors.Is(err, os.ErrNotExist) && !a.apply) {
			errs = append(errs, err)
		}
		for _, e := range have {
			if keep[e.Name()] {
				continue
			}
			changed = true
			p := filepath.Join(dst, e.Name())
			a.report(engine.Change{Property: p, From: typeName(e.Type()), To: "absent", Why: "purged: not in the source"})
			if !a.apply {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			a.log.Debug("purged: not in the source", "path", p)
		}
	}
	return changed, errors.Join(errs...)
}

// link makes dst a symbolic link like src.
func (a *applier) link(src, dst string) (bool, error) {
	target, err := os.Readlink(src)
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	var st unix.Stat_t
	replaceDir := false
	switch err := unix.Lstat(dst, &st); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return false, pathErr("lstat", dst, err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		if have, err := os.Readlink(dst); err == nil && have == target {
			return false, nil
		}
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		if !a.force {
			return false, fmt.Errorf("%s is a directory, the source has a symbolic link: %w", dst, ErrInTheWay)
		}
		replaceDir = true
	}
	c := engine.Change{Property: "target", From: "", To: target}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		c.From, _ = os.Readlink(dst)
	case st.Mode != 0:
		a.report(engine.Change{Property: "state", From: typeName(fileMode(st.Mode)), To: "symbolic link"})
	default:
		a.report(engine.Change{Property: "state", From: "absent", To: "symbolic link"})
	}
	a.report(c)
	if !a.apply {
		return true, nil
	}
	tmp, err := a.createTempLink(target, dst)
	if err != nil {
		return false, err
	}
	if replaceDir {
		if err := os.RemoveAll(dst); err != nil {
			_ = unix.Unlink(tmp)
			return false, err
		}
	}
	if err := unix.Rename(tmp, dst); err != nil {
		_ = unix.Unlink(tmp)
		return false, pathErr("rename", dst, err)
	}
	a.log.Debug("symbolic link set", "path", dst, "target", target)
	return true, syncDir(filepath.Dir(dst))
}

// reportEntry reports one entry of a tree: added, or changed with the
// properties that differ.
func (a *applier) reportEntry(path string, e *treeEntry) {
	switch {
	case len(e.props) == 0:
	case e.added:
		a.report(engine.Change{Property: path, From: "absent", Why: "added"})
	default:
		a.report(engine.Change{Property: path, Why: "changed: " + strings.Join(e.props, ", ")})
	}
}
