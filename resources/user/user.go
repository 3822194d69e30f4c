// Package user is the user resource: a local account (in /etc/passwd and /etc/shadow) kept present with its uid, groups, home, shell, comment and password hash, or absent, through shadow's useradd, usermod, userdel and chpasswd, and repaired as soon as inotify reports a change to the account databases.
package user

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/internal/shadow"
)

func init() {
	engine.Register("user", func() engine.Res { return &User{} })
}

// States a user can be asked to be in.
const (
	StateExists = "exists"
	StateAbsent = "absent"
)

// User manages one local account, named by the resource's name. Every
// parameter left out is not managed: it is whatever useradd made it, and
// is left as it is found.
type User struct {
	State string `yaml:"state"` // exists (the default) or absent
	// UID is the user's number; nil: any (useradd picks one).
	UID *uint32 `yaml:"uid"`
	// GID or Group is the primary group, by number or by name (not both).
	GID   *uint32 `yaml:"gid"`
	Group string  `yaml:"group"`
	// Groups are the supplementary groups, exactly: the user is added to
	// those missing and removed from the others. nil: not managed; an
	// empty list: none.
	Groups []string `yaml:"groups"`
	// Home is the home directory; HomeDir is the original mgmt's name for
	// it.
	Home    string `yaml:"home"`
	HomeDir string `yaml:"homedir"`
	// ManageHome creates the home directory (from /etc/skel) when the user
	// is created (useradd -m); it never removes or moves one.
	ManageHome bool   `yaml:"managehome"`
	Shell      string `yaml:"shell"`
	Comment    string `yaml:"comment"` // the GECOS field
	// System makes a new user a system user (useradd -r). It does not
	// change an existing user.
	System bool `yaml:"system"`
	// Password is the hash in /etc/shadow (crypt(3) form, "$y$..." or
	// "$6$...", or "!" to lock). It is never logged nor reported, and is
	// handed to chpasswd -e on its standard input, never on a command line.
	Password *string `yaml:"password"`
	// AllowDuplicateUID lets the uid be another user's too (-o).
	AllowDuplicateUID bool `yaml:"allowduplicateuid"`

	name string
	log  *slog.Logger
}

// SetName makes the resource's name the login name.
func (r *User) SetName(name string) { r.name = name }

// home is the home directory asked for, by either name.
func (r *User) home() string {
	if r.Home != "" {
		return r.Home
	}
	return r.HomeDir
}

// Validate checks every parameter and reports every problem at once.
func (r *User) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(shadow.CheckName("name", r.name))
	switch r.State {
	case "", StateExists, StateAbsent:
	default:
		add(fmt.Errorf("state: %q is invalid: want exists (the default) or absent", r.State))
	}
	if r.UID != nil && *r.UID == 1<<32-1 {
		add(errors.New("uid: 4294967295 is (uid_t)-1, not a user: want 0 to 4294967294"))
	}
	if r.GID != nil && *r.GID == 1<<32-1 {
		add(errors.New("gid: 4294967295 is (gid_t)-1, not a group: want 0 to 4294967294"))
	}
	if r.GID != nil && r.Group != "" {
		add(errors.New("gid and group: give only one: both name the primary group"))
	}
	if r.Group != "" {
		add(shadow.CheckName("group", r.Group))
	}
	seen := map[string]bool{}
	for i, g := range r.Groups {
		add(shadow.CheckName(fmt.Sprintf("groups[%d]", i), g))
		if seen[g] {
			add(fmt.Errorf("groups[%d]: %q is listed twice", i, g))
		}
		seen[g] = true
	}
	if r.Home != "" && r.HomeDir != "" && filepath.Clean(r.Home) != filepath.Clean(r.HomeDir) {
		add(fmt.Errorf("home and homedir: %q and %q differ: give one (homedir is the original mgmt's name for home)", r.Home, r.HomeDir))
	}
	if h := r.home(); h != "" {
		if !filepath.IsAbs(h) {
			add(fmt.Errorf("home: %q is relative: want an absolute path, e.g. /home/%s", h, r.name))
		}
		add(shadow.CheckField("home", h))
	}
	if r.Shell != "" {
		if !filepath.IsAbs(r.Shell) {
			add(fmt.Errorf("shell: %q is relative: want an absolute path, e.g. /bin/bash", r.Shell))
		}
		add(shadow.CheckField("shell", r.Shell))
	}
	add(shadow.CheckField("comment", r.Comment))
	if r.Password != nil {
		// The message names the offending character, never the value.
		add(shadow.CheckField("password", *r.Password))
		if strings.ContainsAny(*r.Password, " \t") {
			add(errors.New("password: has a space: want a crypt(3) hash (mkpasswd -m yescrypt), not a clear-text password"))
		}
	}
	return errors.Join(errs...)
}

// Init keeps the logger.
func (r *User) Init(env engine.Env) error {
	r.log = env.Logger
	return nil
}

func (r *User) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "user["+r.name+"]")
	}
	return r.log
}

// Watch reports changes to /etc/passwd, /etc/shadow and /etc/group (the
// supplementary groups are kept there).
func (r *User) Watch(ctx context.Context, ev engine.Events) error {
	return shadow.Watch(ctx, ev, shadow.PasswdFile, shadow.ShadowFile, shadow.GroupFile)
}

// Close has nothing to release.
func (r *User) Close() error { return nil }

// Fingerprint stands for a secret in reports: enough to tell two values
// apart, nothing to recover either.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func num(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// CheckApply reads the account databases and, with apply, runs useradd (a
// new user), usermod (the properties that differ), chpasswd -e (the
// password) or userdel. Each property that differs is reported.
func (r *User) CheckApply(ctx context.Context, apply bool) (bool, error) {
	cur, err := shadow.LookupUser(r.name)
	exists := err == nil
	if err != nil && !errors.Is(err, shadow.ErrNotFound) {
		return false, err
	}
	if r.State == StateAbsent {
		if !exists {
			return false, nil
		}
		engine.Changed(ctx, engine.Change{Property: "state", From: StateExists, To: StateAbsent, Why: "the user is in " + shadow.PasswdFile})
		if !apply {
			return true, nil
		}
		// Without -r: the home and the mail spool are the user's data,
		// never removed by a configuration change.
		return true, r.run(ctx, nil, "userdel", r.name)
	}

	var argv []string
	var changes []engine.Change
	if !exists {
		changes = append(changes, engine.Change{Property: "state", From: StateAbsent, To: StateExists, Why: "no such user in " + shadow.PasswdFile})
		argv = r.addArgs()
	} else {
		argv, changes, err = r.modArgs(cur)
		if err != nil {
			return false, err
		}
	}
	var pw []byte
	if r.Password != nil {
		hash, found, err := "", false, error(nil)
		if exists {
			hash, found, err = shadow.Password(r.name)
			if err != nil {
				return false, err
			}
		}
		if !found || hash != *r.Password {
			from := "" // no hash yet: shown as no value, not as a hash
			if found {
				from = Fingerprint(hash)
			}
			changes = append(changes, engine.Change{Property: "password", From: from, To: Fingerprint(*r.Password), Sensitive: true})
			pw = []byte(r.name + ":" + *r.Password + "\n")
		}
	}
	if len(changes) == 0 {
		return false, nil
	}
	engine.Changed(ctx, changes...)
	if !apply {
		return true, nil
	}
	if argv != nil {
		if err := r.run(ctx, nil, argv...); err != nil {
			return true, err
		}
	}
	if pw != nil {
		if err := r.run(ctx, pw, "chpasswd", "-e"); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (r *User) run(ctx context.Context, stdin []byte, argv ...string) error {
	if err := shadow.Run(ctx, stdin, argv...); err != nil {
		return fmt.Errorf("user %s: %w", r.name, err)
	}
	r.logger().Info("user changed", "cmd", argv[0])
	return nil
}

// primary is the primary group asked for, as useradd's -g takes it.
func (r *User) primary() string {
	if r.GID != nil {
		return num(*r.GID)
	}
	return r.Group
}

func (r *User) addArgs() []string {
	argv := []string{"useradd"}
	if r.UID != nil {
		argv = append(argv, "-u", num(*r.UID))
	}
	if r.AllowDuplicateUID {
		argv = append(argv, "-o")
	}
	if g := r.primary(); g != "" {
		// -N: no group of the user's own name, since one is named.
		argv = append(argv, "-g", g, "-N")
	}
	if r.Groups != nil {
		argv = append(argv, "-G", strings.Join(r.Groups, ","))
	}
	if h := r.home(); h != "" {
		argv = append(argv, "-d", filepath.Clean(h))
	}
	// Explicit either way, so that login.defs' CREATE_HOME does not decide.
	if r.ManageHome {
		argv = append(argv, "-m")
	} else {
		argv = append(argv, "-M")
	}
	if r.Shell != "" {
		argv = append(argv, "-s", r.Shell)
	}
	if r.Comment != "" {
		argv = append(argv, "-c", r.Comment)
	}
	if r.System {
		argv = append(argv, "-r")
	}
	return append(argv, r.name)
}

// modArgs compares the existing user with the parameters: the usermod that
// repairs them (nil when nothing but the password differs) and the changes.
func (r *User) modArgs(cur shadow.User) ([]string, []engine.Change, error) {
	var argv []string
	var changes []engine.Change
	mod := func(property, from, to string, flag string) {
		changes = append(changes, engine.Change{Property: property, From: from, To: to})
		argv = append(argv, flag, to)
	}
	if r.UID != nil && cur.UID != *r.UID {
		mod("uid", num(cur.UID), num(*r.UID), "-u")
		if r.AllowDuplicateUID {
			argv = append(argv, "-o")
		}
	}
	switch {
	case r.GID != nil && cur.GID != *r.GID:
		mod("gid", num(cur.GID), num(*r.GID), "-g")
	case r.Group != "":
		g, err := shadow.LookupGroup(r.Group)
		switch {
		case errors.Is(err, shadow.ErrNotFound):
			// usermod fails, and says so, if it is still missing then.
			mod("group", num(cur.GID), r.Group, "-g")
		case err != nil:
			return nil, nil, err
		case g.GID != cur.GID:
			changes = append(changes, engine.Change{Property: "group", From: num(cur.GID), To: r.Group + " (" + num(g.GID) + ")"})
			argv = append(argv, "-g", r.Group)
		}
	}
	if r.Groups != nil {
		have, err := shadow.GroupsOf(r.name)
		if err != nil {
			return nil, nil, err
		}
		want := slices.Clone(r.Groups)
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			mod("groups", strings.Join(have, ","), strings.Join(want, ","), "-G")
		}
	}
	if h := r.home(); h != "" && filepath.Clean(h) != cur.Home {
		mod("home", cur.Home, filepath.Clean(h), "-d")
	}
	if r.Shell != "" && r.Shell != cur.Shell {
		mod("shell", cur.Shell, r.Shell, "-s")
	}
	if r.Comment != "" && r.Comment != cur.Comment {
		mod("comment", cur.Comment, r.Comment, "-c")
	}
	if argv == nil {
		return nil, changes, nil
	}
	return append(append([]string{"usermod"}, argv...), r.name), changes, nil
}

// UIDs names the user, for the files it owns and its ssh keys.
func (r *User) UIDs() []engine.UID {
	if r.State == StateAbsent {
		return nil
	}
	return []engine.UID{{Kind: "user", Key: r.name}}
}

// AutoEdges orders the user after the groups it names: its primary group
// (by name, or by gid from a group resource that sets that gid) and its
// supplementary groups.
func (r *User) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if r.State == StateAbsent {
		return nil, nil
	}
	var edges []engine.AutoEdge
	if r.Group != "" {
		edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "group", Key: r.Group}}})
	}
	if r.GID != nil {
		edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "gid", Key: num(*r.GID)}}})
	}
	for _, g := range r.Groups {
		edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "group", Key: g}}})
	}
	return edges, nil
}
