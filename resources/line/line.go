// Package line is the line resource: one line of a file that the graph does not otherwise own, present or absent, replaced in place when a regular expression finds its old form.
package line

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/resources/file"
)

func init() {
	engine.Register("line", func() engine.Res { return &Line{} })
}

// States a line can be asked to be in.
const (
	StatePresent = "present"
	StateAbsent  = "absent"
)

// Line manages one line of the file at Path.
type Line struct {
	Path  string `yaml:"path"`  // absolute
	Line  string `yaml:"line"`  // the whole line, without its newline
	State string `yaml:"state"` // present (default) or absent
	Match string `yaml:"match"` // a regular expression (RE2) matching the line's old forms

	fsw   *fswatch.Watcher // nil: fswatch.Default()
	path  string           // cleaned by Validate
	match *regexp.Regexp   // nil: none
}

// Validate checks the parameters; every problem is reported at once.
func (r *Line) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case r.Path == "":
		bad("path: missing: want the absolute path of the file, e.g. path: /etc/ssh/sshd_config")
	case strings.ContainsRune(r.Path, 0):
		bad("path: %q contains a NUL byte", r.Path)
	case !filepath.IsAbs(r.Path):
		bad("path: %q is relative: want an absolute path", r.Path)
	case file.IsDirPath(r.Path):
		bad("path: %q is a directory: want the path of a file", r.Path)
	default:
		r.path = filepath.Clean(r.Path)
	}
	if strings.ContainsAny(r.Line, "\n\x00") {
		bad("line: %q contains a newline or a NUL byte: want one line", r.Line)
	}
	switch r.State {
	case "", StatePresent:
		if r.Line == "" {
			bad("line: missing: want the line to keep in the file, e.g. line: PermitRootLogin no")
		}
	case StateAbsent:
		if r.Line == "" && r.Match == "" {
			bad("line: missing: state absent removes the lines equal to line, or those matching match: give one")
		}
	default:
		bad("state: %q is invalid: want present (the default) or absent", r.State)
	}
	r.match = nil
	if r.Match != "" {
		re, err := regexp.Compile(r.Match)
		if err != nil {
			bad("match: %q: %w: want a regular expression (RE2 syntax), e.g. match: ^#?PermitRootLogin", r.Match, err)
		}
		r.match = re
	}
	return errors.Join(errs...)
}

func (r *Line) absent() bool { return r.State == StateAbsent }

// Init has nothing to prepare: the engine logs the changes CheckApply
// reports (engine.Changed).
func (r *Line) Init(engine.Env) error { return nil }

// UIDs names the line of the file, so that two resources declaring the
// same line of one file are refused.
func (r *Line) UIDs() []engine.UID {
	if !filepath.IsAbs(r.Path) {
		return nil
	}
	return []engine.UID{{Kind: "line", Key: filepath.Clean(r.Path) + "\n" + r.Line + "\n" + r.Match}}
}

// Excludes refuses a file resource that manages the same file's whole
// content: it and this line would undo each other forever.
func (r *Line) Excludes() []engine.UID {
	if !filepath.IsAbs(r.Path) {
		return nil
	}
	return []engine.UID{{Kind: file.ContentUID, Key: filepath.Clean(r.Path)}}
}

// AutoEdges puts the line after the file resource that manages its file
// (creating it, giving it an owner), or else after the nearest managed
// directory above it.
func (r *Line) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if !filepath.IsAbs(r.Path) {
		return nil, nil
	}
	var uids []engine.UID
	for p := filepath.Clean(r.Path); ; p = filepath.Dir(p) {
		uids = append(uids, engine.UID{Kind: "file", Key: p})
		if p == "/" {
			break
		}
	}
	return []engine.AutoEdge{{UIDs: uids}}, nil
}

// Watch reports every change to the file through the process's one inotify
// instance.
func (r *Line) Watch(ctx context.Context, ev engine.Events) error {
	if r.path == "" {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	w := r.fsw
	if w == nil {
		var err error
		if w, err = fswatch.Default(); err != nil {
			return err
		}
	}
	cancel, err := w.Watch(r.path, ev.Dirty)
	if err != nil {
		return err
	}
	defer cancel()
	ev.Running()
	<-ctx.Done()
	return nil
}

// Close has nothing to release: Watch drops its watch when it returns.
func (r *Line) Close() error { return nil }

// CheckApply reads the file and, when the line is not as wanted, reports
// the difference and with apply writes the edited file beside it and
// renames it over the file, keeping its mode and owner. A missing file is
// created (mode 0644) for a present line, and left missing for an absent
// one.
func (r *Line) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if r.path == "" {
		if err := r.Validate(); err != nil {
			return false, err
		}
	}
	old, err := os.ReadFile(r.path)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return false, fmt.Errorf("line: reading %s: %w", r.path, err)
	}
	edited, change := r.edit(old)
	if change == nil {
		return false, nil
	}
	engine.Changed(ctx, *change)
	if !apply {
		return true, nil
	}
	if err := writeOver(r.path, edited, missing); err != nil {
		return false, err
	}
	return true, nil
}

// edit returns the file's content with the line as wanted, and the change
// made, or nil when there is none.
func (r *Line) edit(content []byte) ([]byte, *engine.Change) {
	lines := splitLines(content)
	if r.absent() {
		var kept [][]byte
		var removed []string
		for _, l := range lines {
			if string(l) == r.Line && r.Match == "" || r.match != nil && r.match.Match(l) {
				removed = append(removed, string(l))
				continue
			}
			kept = append(kept, l)
		}
		if len(removed) == 0 {
			return content, nil
		}
		why := fmt.Sprintf("%d line(s) equal to line", len(removed))
		if r.match != nil {
			why = fmt.Sprintf("%d line(s) match %s", len(removed), r.Match)
		}
		return joinLines(kept), &engine.Change{Property: "line", From: strings.Join(removed, "\n"), To: "(absent)", Why: why}
	}
	for _, l := range lines {
		if string(l) == r.Line {
			return content, nil
		}
	}
	if r.match != nil {
		for i, l := range lines {
			if r.match.Match(l) {
				lines[i] = []byte(r.Line)
				return joinLines(lines), &engine.Change{Property: "line", From: string(l), To: r.Line,
					Why: fmt.Sprintf("line %d matches %s", i+1, r.Match)}
			}
		}
	}
	why := "not in the file: appended"
	if content == nil {
		why = "the file is missing: created with the line"
	}
	return joinLines(append(lines, []byte(r.Line))), &engine.Change{Property: "line", From: "(absent)", To: r.Line, Why: why}
}

// splitLines splits content into lines without their newlines; a last line
// without a newline is a line.
func splitLines(content []byte) [][]byte {
	if len(content) == 0 {
		return nil
	}
	return bytes.Split(bytes.TrimSuffix(content, []byte("\n")), []byte("\n"))
}

// joinLines ends every line with a newline.
func joinLines(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// writeOver writes content to a new temporary file beside path, gives it
// the mode and owner of the file it replaces, syncs it and renames it over
// path: a reader sees the old file or the new one, never half of it.
func writeOver(path string, content []byte, missing bool) error {
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	if !missing {
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("line: %w", err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("line: %s is a %s: want a regular file", path, st.Mode().Type())
		}
		mode = st.Mode().Perm() | st.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(sys.Uid), int(sys.Gid)
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"."+hex.EncodeToString(rnd[:])+".mgmt-line")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("line: %w", err)
	}
	err = func() error {
		if _, err := f.Write(content); err != nil {
			return err
		}
		if uid >= 0 {
			if err := f.Chown(uid, gid); err != nil {
				return err
			}
		}
		if err := f.Chmod(mode); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("line: writing %s: %w", path, err)
	}
	return nil
}
