// Package shadow reads the local account databases (/etc/passwd, /etc/shadow, /etc/group) and changes them through shadow's tools, which take the locks (lckpwdf) every other tool editing them takes.
package shadow

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
)

// The databases. They are replaced by rename (shadow's tools write
// passwd+ and rename it over passwd), so they are watched by name through
// their directory, which is what fswatch does.
const (
	PasswdFile  = "/etc/passwd"
	ShadowFile  = "/etc/shadow"
	GroupFile   = "/etc/group"
	GshadowFile = "/etc/gshadow"
)

// User is one line of /etc/passwd.
type User struct {
	Name    string
	UID     uint32
	GID     uint32
	Comment string // the GECOS field
	Home    string
	Shell   string
}

// Group is one line of /etc/group.
type Group struct {
	Name    string
	GID     uint32
	Members []string
}

// ErrNotFound is returned by the lookups for a name that has no entry.
var ErrNotFound = errors.New("not found")

// fields reads a colon-separated database: each line with at least min
// fields, comments, blank lines and NIS lines ("+", "-") skipped. A missing
// file is empty.
func fields(path string, min int, fn func(f []string) bool) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("shadow: %w", err)
	}
	return parse(b, min, fn)
}

func parse(b []byte, min int, fn func(f []string) bool) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < min {
			continue
		}
		if !fn(f) {
			return nil
		}
	}
	return sc.Err()
}

// ParseUser reads a passwd line's fields.
func parseUser(f []string) (User, bool) {
	uid, err1 := strconv.ParseUint(f[2], 10, 32)
	gid, err2 := strconv.ParseUint(f[3], 10, 32)
	if err1 != nil || err2 != nil {
		return User{}, false
	}
	return User{Name: f[0], UID: uint32(uid), GID: uint32(gid), Comment: f[4], Home: f[5], Shell: f[6]}, true
}

func parseGroup(f []string) (Group, bool) {
	gid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return Group{}, false
	}
	g := Group{Name: f[0], GID: uint32(gid)}
	for _, m := range strings.Split(f[3], ",") {
		if m != "" {
			g.Members = append(g.Members, m)
		}
	}
	return g, true
}

// LookupUser returns the passwd entry of name.
func LookupUser(name string) (User, error) {
	var u User
	found := false
	err := fields(PasswdFile, 7, func(f []string) bool {
		if f[0] != name {
			return true
		}
		u, found = parseUser(f)
		return !found
	})
	if err == nil && !found {
		err = fmt.Errorf("user %s: %w in %s", name, ErrNotFound, PasswdFile)
	}
	return u, err
}

// LookupGroup returns the group entry of name.
func LookupGroup(name string) (Group, error) {
	return findGroup(func(g Group) bool { return g.Name == name }, "group "+name)
}

// LookupGID returns the group entry of gid (the first, if several share it).
func LookupGID(gid uint32) (Group, error) {
	return findGroup(func(g Group) bool { return g.GID == gid }, "gid "+strconv.FormatUint(uint64(gid), 10))
}

func findGroup(match func(Group) bool, what string) (Group, error) {
	var out Group
	found := false
	err := fields(GroupFile, 4, func(f []string) bool {
		g, ok := parseGroup(f)
		if ok && match(g) {
			out, found = g, true
			return false
		}
		return true
	})
	if err == nil && !found {
		err = fmt.Errorf("%s: %w in %s", what, ErrNotFound, GroupFile)
	}
	return out, err
}

// GroupsOf lists the groups whose member list names user, in file order.
func GroupsOf(user string) ([]string, error) {
	var out []string
	err := fields(GroupFile, 4, func(f []string) bool {
		if g, ok := parseGroup(f); ok {
			for _, m := range g.Members {
				if m == user {
					out = append(out, g.Name)
					break
				}
			}
		}
		return true
	})
	return out, err
}

// Password returns the password field of user's /etc/shadow line; found is
// false when it has none.
func Password(user string) (hash string, found bool, err error) {
	err = fields(ShadowFile, 2, func(f []string) bool {
		if f[0] == user {
			hash, found = f[1], true
			return false
		}
		return true
	})
	return hash, found, err
}

// ToolError is a shadow tool that failed, with what it wrote on stderr.
type ToolError struct {
	Argv   []string
	Stderr string
	Err    error
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *ToolError) Unwrap() error { return e.Err }

// ToolTimeout bounds one run of a tool: they wait for the databases' lock
// (lckpwdf gives up after 15 s) and must not hang a vertex beyond that.
const ToolTimeout = 30 * time.Second

// Run runs a shadow tool (useradd, groupmod, ...) with stdin as its input
// (nil: none). Its arguments must not carry secrets: they are visible in
// /proc and quoted in errors; a password hash goes through stdin
// (chpasswd -e).
func Run(ctx context.Context, stdin []byte, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ToolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return &ToolError{Argv: argv, Stderr: stderr.String(), Err: err}
	}
	return nil
}

// Watch calls ev.Dirty whenever one of paths may have changed, through the
// process's shared inotify watcher, until ctx ends.
func Watch(ctx context.Context, ev engine.Events, paths ...string) error {
	w, err := fswatch.Default()
	if err != nil {
		return err
	}
	for _, p := range paths {
		cancel, err := w.Watch(p, ev.Dirty)
		if err != nil {
			return fmt.Errorf("shadow: watching %s: %w", p, err)
		}
		defer cancel()
	}
	ev.Running()
	<-ctx.Done()
	return nil
}

// MaxNameLen is the longest user or group name accepted (utmp's limit,
// which shadow's tools enforce).
const MaxNameLen = 32

// CheckName checks a user or group name the way shadow's tools do,
// leniently: 1 to 32 of letters, digits, '_', '-' and '.', not starting with
// '-', not all digits (it would read as an id), not "." or "..", with an
// optional trailing '$' (machine accounts). what names it in the message.
func CheckName(what, name string) error {
	bad := func(why string) error {
		return fmt.Errorf("%s: %q %s: want 1 to %d letters, digits, '_', '-' or '.', not starting with '-', e.g. alice", what, name, why, MaxNameLen)
	}
	switch {
	case name == "":
		return fmt.Errorf("%s: missing: want a name, e.g. alice", what)
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("is %d bytes long", len(name)))
	case name == "." || name == "..":
		return bad("is not a name")
	case name[0] == '-':
		return bad("starts with '-'")
	}
	digits := true
	for i, c := range name {
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '-', c == '.':
			digits = false
		case c == '$' && i == len(name)-1 && i > 0:
			digits = false
		default:
			return bad(fmt.Sprintf("has the character %q", c))
		}
	}
	if digits {
		return bad("is all digits: it would read as an id")
	}
	return nil
}

// CheckField checks a free-text field (a comment, a home, a shell, a
// password hash): it must not break the colon-separated line it is written
// into.
func CheckField(what, v string) error {
	if i := strings.IndexAny(v, ":\n\r\x00"); i >= 0 {
		return fmt.Errorf("%s: has the character %q, which the account databases cannot hold", what, v[i])
	}
	return nil
}
