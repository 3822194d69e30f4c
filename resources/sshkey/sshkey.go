// Package sshkey is the ssh_authorized_key resource: one public key kept in (or out of) a user's ~/.ssh/authorized_keys, with the owner and modes sshd's StrictModes wants, repaired as soon as inotify reports a change, and collectable so that hosts can export their keys and a bastion collect them.
package sshkey

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/resources/internal/shadow"
	"golang.org/x/sys/unix"
)

// Kind is the resource kind's name.
const Kind = "ssh_authorized_key"

func init() {
	engine.Register("ssh_authorized_key", func() engine.Res { return &Key{} })
}

// States a key can be asked to be in.
const (
	StateExists = "exists"
	StateAbsent = "absent"
)

// Modes sshd's StrictModes accepts, and that the resource gives what it
// manages.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// Types lists the key types accepted, as OpenSSH names them.
var Types = []string{
	"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss",
}

func knownType(t string) bool {
	for _, k := range Types {
		if t == k || t == strings.TrimSuffix(k, "@openssh.com")+"-cert-v01@openssh.com" {
			return true
		}
	}
	return false
}

// Key is one public key authorized for a user. The key is identified in
// the file by its key material: a line with the same key and other options
// or comment is rewritten, duplicates are removed.
type Key struct {
	User    string   `yaml:"user"`    // the local user whose authorized_keys hold it
	Type    string   `yaml:"type"`    // ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256...
	Key     string   `yaml:"key"`     // the base64 key material
	Comment string   `yaml:"comment"` // free text at the end of the line
	Options []string `yaml:"options"` // e.g. from="10.0.0.0/8", no-pty, command="..."
	State   string   `yaml:"state"`   // exists (the default) or absent

	name string
	blob []byte // decoded Key, set by Validate
	log  *slog.Logger
}

// SetName keeps the resource's name, for messages.
func (r *Key) SetName(name string) { r.name = name }

// Validate checks the user, the type against the key material, the
// options and the comment.
func (r *Key) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(shadow.CheckName("user", r.User))
	switch r.State {
	case "", StateExists, StateAbsent:
	default:
		add(fmt.Errorf("state: %q is invalid: want exists (the default) or absent", r.State))
	}
	if !knownType(r.Type) {
		add(fmt.Errorf("type: %q is not a key type: want one of %s", r.Type, strings.Join(Types, ", ")))
	}
	blob, err := base64.StdEncoding.DecodeString(r.Key)
	switch {
	case r.Key == "":
		add(errors.New("key: missing: want the key's base64 material, the second field of a .pub file"))
	case err != nil:
		add(fmt.Errorf("key: not base64: %w: want the second field of a .pub file, e.g. AAAAC3NzaC1lZDI1NTE5...", err))
	default:
		if t, ok := blobType(blob); !ok {
			add(errors.New("key: does not hold an ssh public key (no key type at its start)"))
		} else if knownType(r.Type) && t != r.Type {
			add(fmt.Errorf("key: holds a %s key, but type is %s: want type: %s", t, r.Type, t))
		}
		r.blob = blob
	}
	for i, o := range r.Options {
		if err := checkOption(o); err != nil {
			add(fmt.Errorf("options[%d]: %q %w", i, o, err))
		}
	}
	if strings.ContainsAny(r.Comment, "\n\r\x00") {
		add(errors.New("comment: has a line break or NUL: want one line"))
	}
	return errors.Join(errs...)
}

// blobType reads the key type at the start of a key blob (an SSH string:
// a 4-byte length, then the name).
func blobType(b []byte) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > 64 || uint32(len(b)-4) < n {
		return "", false
	}
	return string(b[4 : 4+n]), true
}

// checkOption accepts what sshd accepts: a name, or name="value" with
// \" escapes, and nothing that ends the line or the option list.
func checkOption(o string) error {
	if o == "" {
		return errors.New("is empty")
	}
	if strings.ContainsAny(o, "\n\r\x00") {
		return errors.New("has a line break or NUL")
	}
	if o[0] == '#' {
		return errors.New("starts with '#': the whole line would be a comment")
	}
	if knownType(o) {
		return errors.New("is a key type: the line would not be read as this key")
	}
	quoted := false
	for i := 0; i < len(o); i++ {
		switch c := o[i]; {
		case c == '\\' && quoted && i+1 < len(o):
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ',' || c == ' ' || c == '\t'):
			return errors.New(`has a space or comma outside quotes: give one option per item, e.g. from="10.0.0.0/8"`)
		}
	}
	if quoted {
		return errors.New("has an unterminated quote")
	}
	return nil
}

// Line is the line the key has in authorized_keys.
func (r *Key) Line() string {
	var b strings.Builder
	if len(r.Options) > 0 {
		b.WriteString(strings.Join(r.Options, ","))
		b.WriteByte(' ')
	}
	b.WriteString(r.Type + " " + r.Key)
	if c := strings.TrimSpace(r.Comment); c != "" {
		b.WriteString(" " + c)
	}
	return b.String()
}

// Init keeps the logger.
func (r *Key) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *Key) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", Kind+"["+r.name+"]")
	}
	return r.log
}

// Close has nothing to release.
func (r *Key) Close() error { return nil }

// home returns the user's home directory as /etc/passwd has it now, or ""
// when the user does not exist.
func (r *Key) home() (shadow.User, error) {
	u, err := shadow.LookupUser(r.User)
	if errors.Is(err, shadow.ErrNotFound) {
		return shadow.User{}, nil
	}
	return u, err
}

// Watch reports changes to /etc/passwd (the home may move), to the user's
// ~/.ssh and to its authorized_keys, re-aiming at the new home when
// /etc/passwd changes.
func (r *Key) Watch(ctx context.Context, ev engine.Events) error {
	w, err := fswatch.Default()
	if err != nil {
		return err
	}
	passwd := make(chan struct{}, 1)
	cancelPw, err := w.Watch(shadow.PasswdFile, func() {
		ev.Dirty()
		select {
		case passwd <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	defer cancelPw()
	var home string
	var cancels []func()
	drop := func() {
		for _, c := range cancels {
			c()
		}
		cancels = nil
	}
	defer drop()
	aim := func() error {
		u, err := r.home()
		if err != nil {
			return err
		}
		if u.Home == home && (home != "" || cancels == nil) {
			return nil
		}
		drop()
		home = u.Home
		if home == "" {
			return nil
		}
		for _, p := range []string{filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
			c, err := w.Watch(p, ev.Dirty)
			if err != nil {
				return err
			}
			cancels = append(cancels, c)
		}
		return nil
	}
	if err := aim(); err != nil {
		return err
	}
	ev.Running()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-passwd:
			if err := aim(); err != nil {
				return err
			}
		}
	}
}

// CheckApply compares the user's authorized_keys (and ~/.ssh) with the key
// and, with apply, rewrites the file: a temporary file in ~/.ssh, owned by
// the user, mode 0600, synced and renamed over it. ~/.ssh and the file
// are opened without following symbolic links: the user owns them, and
// could otherwise point root's writes at any file.
func (r *Key) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if r.blob == nil {
		if err := r.Validate(); err != nil {
			return false, err
		}
	}
	absent := r.State == StateAbsent
	u, err := r.home()
	if err != nil {
		return false, err
	}
	if u.Name == "" {
		if absent {
			return false, nil
		}
		return false, fmt.Errorf("user %s: %w in %s (a user resource of the graph that creates it is applied first)", r.User, shadow.ErrNotFound, shadow.PasswdFile)
	}
	homeFd, err := unix.Open(u.Home, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if absent && errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("home of %s: %w", r.User, &fs.PathError{Op: "open", Path: u.Home, Err: err})
	}
	defer unix.Close(homeFd)
	a := &applier{ctx: ctx, apply: apply, uid: int(u.UID), gid: int(u.GID), dir: filepath.Join(u.Home, ".ssh")}
	sshFd, err := a.sshDir(homeFd, absent)
	if err != nil || sshFd < 0 {
		return a.changed, err
	}
	defer unix.Close(sshFd)
	return a.changed, a.keys(sshFd, r, absent)
}

// applier carries one CheckApply.
type applier struct {
	ctx      context.Context
	apply    bool
	uid, gid int
	dir      string // ~/.ssh, for messages
	changed  bool
}

func (a *applier) report(c engine.Change) {
	a.changed = true
	engine.Changed(a.ctx, c)
}

// sshDir opens ~/.ssh, creating it (for a key that must exist) or fixing
// its owner and mode. It returns -1 when there is none and none is needed.
func (a *applier) sshDir(home int, absent bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(home, ".ssh", flags, 0)
	if errors.Is(err, unix.ENOENT) {
		if absent {
			return -1, nil
		}
		a.report(engine.Change{Property: "ssh directory", From: "absent", To: a.dir, Why: "no ~/.ssh"})
		if !a.apply {
			// Nor is there a key in it: say so, as the apply will.
			a.report(engine.Change{Property: "state", From: StateAbsent, To: StateExists, Why: filepath.Join(a.dir, "authorized_keys")})
			return -1, nil
		}
		if err := unix.Mkdirat(home, ".ssh", dirMode); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &fs.PathError{Op: "mkdir", Path: a.dir, Err: err}
		}
		fd, err = unix.Openat(home, ".ssh", flags, 0)
		if err == nil {
			// Made here, it is the user's from the start: its owner
			// is part of the change reported above, not another one.
			if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
				unix.Close(fd)
				return -1, &fs.PathError{Op: "chown", Path: a.dir, Err: err}
			}
		}
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s is not a directory (a symbolic link?): refused, the key is not written through it", a.dir)
		}
		return -1, &fs.PathError{Op: "open", Path: a.dir, Err: err}
	}
	if absent {
		return fd, nil
	}
	if err := a.attrs(fd, a.dir, dirMode); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// attrs gives fd the user as owner and mode.
func (a *applier) attrs(fd int, path string, mode uint32) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	if int(st.Uid) != a.uid || int(st.Gid) != a.gid {
		a.report(engine.Change{Property: "owner of " + path, From: fmt.Sprintf("%d:%d", st.Uid, st.Gid), To: fmt.Sprintf("%d:%d", a.uid, a.gid)})
		if a.apply {
			if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
				return &fs.PathError{Op: "chown", Path: path, Err: err}
			}
		}
	}
	if st.Mode&0o7777 != mode {
		a.report(engine.Change{Property: "mode of " + path, From: fmt.Sprintf("%04o", st.Mode&0o7777), To: fmt.Sprintf("%04o", mode)})
		if a.apply {
			if err := unix.Fchmod(fd, mode); err != nil {
				return &fs.PathError{Op: "chmod", Path: path, Err: err}
			}
		}
	}
	return nil
}

// keys brings authorized_keys in ~/.ssh (dir) in line with r.
func (a *applier) keys(dir int, r *Key, absent bool) error {
	path := filepath.Join(a.dir, "authorized_keys")
	var old []byte
	fd, err := unix.Openat(dir, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		fd = -1
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s is a symbolic link: refused, the key is not written through it", path)
	case err != nil:
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if fd >= 0 {
		f := os.NewFile(uintptr(fd), path)
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s is not a regular file: refused", path)
		}
		if old, err = io.ReadAll(f); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
	}
	want, change := edit(old, r, absent)
	if change != nil {
		change.Why = path
		a.report(*change)
	}
	if bytes.Equal(want, old) {
		if fd >= 0 && !absent {
			return a.attrs(fd, path, fileMode)
		}
		return nil
	}
	if !a.apply {
		return nil
	}
	return a.replace(dir, path, want)
}

// replace writes data to a new file in dir and renames it over
// authorized_keys.
func (a *applier) replace(dir int, path string, data []byte) error {
	const tmp = ".authorized_keys.mgmt-tmp"
	_ = unix.Unlinkat(dir, tmp, 0) // left by a crash
	fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return &fs.PathError{Op: "create", Path: filepath.Join(a.dir, tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = errors.Join(unix.Fchown(fd, a.uid, a.gid), unix.Fchmod(fd, fileMode))
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, "authorized_keys")
	}
	if err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// edit returns the file's content with the key's line in place (or gone),
// and what changed; nil when the key's line is as wanted.
func edit(old []byte, r *Key, absent bool) ([]byte, *engine.Change) {
	line := r.Line()
	var out []byte
	found, same := 0, false
	for _, l := range strings.SplitAfter(string(old), "\n") {
		if l == "" {
			continue
		}
		if b := lineBlob(strings.TrimRight(l, "\r\n")); b != nil && bytes.Equal(b, r.blob) {
			found++
			if found == 1 && !absent {
				same = strings.TrimRight(l, "\r\n") == line
				out = append(out, line+"\n"...)
			}
			continue
		}
		out = append(out, l...)
		if !strings.HasSuffix(l, "\n") {
			out = append(out, '\n')
		}
	}
	switch {
	case absent && found > 0:
		return out, &engine.Change{Property: "state", From: StateExists, To: StateAbsent}
	case absent:
		return old, nil
	case found == 0:
		out = append(out, line+"\n"...)
		return out, &engine.Change{Property: "state", From: StateAbsent, To: StateExists}
	case !same:
		return out, &engine.Change{Property: "line", To: line}
	case found > 1:
		return out, &engine.Change{Property: "duplicates", From: fmt.Sprint(found), To: "1"}
	}
	// Only a missing final newline on another line may differ: keep the
	// file as it is.
	if bytes.Equal(bytes.TrimRight(out, "\n"), bytes.TrimRight(old, "\n")) {
		return old, nil
	}
	return out, nil
}

// lineBlob finds the key material of an authorized_keys line: the field
// after the first that is a key type (options may come first, with quoted
// spaces). nil for a comment, a blank line or a line it cannot read.
func lineBlob(line string) []byte {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return nil
	}
	f := fields(line)
	for i := 0; i+1 < len(f); i++ {
		if knownType(f[i]) {
			b, err := base64.StdEncoding.DecodeString(f[i+1])
			if err != nil {
				return nil
			}
			return b
		}
	}
	return nil
}

// fields splits at spaces and tabs outside double quotes.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && quoted && i+1 < len(s):
			cur.WriteByte(c)
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			cur.WriteByte(c)
		case !quoted && (c == ' ' || c == '\t'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// AutoEdges orders the key after its user, and after the file resources
// of its authorized_keys, ~/.ssh and home (the home as /etc/passwd has it
// now, else useradd's default /home/USER).
func (r *Key) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	edges := []engine.AutoEdge{{UIDs: []engine.UID{{Kind: "user", Key: r.User}}}}
	home := "/home/" + r.User
	if u, err := r.home(); err == nil && u.Home != "" {
		home = filepath.Clean(u.Home)
	}
	edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{
		{Kind: "file", Key: filepath.Join(home, ".ssh", "authorized_keys")},
		{Kind: "file", Key: filepath.Join(home, ".ssh")},
		{Kind: "file", Key: home},
	}})
	return edges, nil
}

// ErrCollect is returned by Collect for a key that must not be collected.
var ErrCollect = errors.New("ssh_authorized_key cannot be collected")

// CheckPattern checks a collect pattern: the local user whose
// authorized_keys receive the collected keys.
func (r *Key) CheckPattern(pattern string) error {
	if err := shadow.CheckName("pattern", pattern); err != nil {
		return fmt.Errorf("%w (the local user that receives the collected keys)", err)
	}
	return nil
}

// Collect returns the key as a collecting host manages it: the same key,
// options and comment, authorized for the local user the pattern names (a
// bastion's jump user), whatever user it was exported for.
func (r *Key) Collect(pattern string) (engine.Res, error) {
	if err := r.CheckPattern(pattern); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCollect, err)
	}
	c := &Key{User: pattern, Type: r.Type, Key: r.Key, Comment: r.Comment, Options: append([]string(nil), r.Options...), State: r.State, name: r.name}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCollect, err)
	}
	return c, nil
}
