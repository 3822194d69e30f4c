// Package file is the file resource: a file's or directory's existence, content, mode and owner, kept as declared and repaired as soon as inotify reports a change.
package file

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/quote"
	"golang.org/x/sys/unix"
)

func init() {
	engine.Register("file", func() engine.Res { return &File{} })
}

// States a file can be asked to be in.
const (
	StateExists = "exists"
	StateAbsent = "absent"
)

// File manages one path. A path ending in "/" is a directory.
type File struct {
	Path      string  `yaml:"path"`    // absolute; a trailing "/" means a directory
	Content   *string `yaml:"content"` // the exact content; nil: not managed
	Source    string  `yaml:"source"`  // a local file to copy, or with recurse a directory tree
	State     string  `yaml:"state"`   // exists (default) or absent
	Mode      string  `yaml:"mode"`    // octal, e.g. "0640"; empty: not managed (new files get 0644, directories 0755)
	Owner     string  `yaml:"owner"`   // user name or uid; empty: not managed
	GroupName string  `yaml:"group"`   // group name or gid; empty: not managed
	Recurse   bool    `yaml:"recurse"` // a directory: copy the source tree into it
	Purge     bool    `yaml:"purge"`   // with recurse: remove what is not in the source
	Force     bool    `yaml:"force"`   // replace a directory by a file or the reverse; remove non-empty directories

	name string // the resource's name, for messages about it in a group
	log  *slog.Logger
	fsw  *fswatch.Watcher // nil: fswatch.Default()
	s    *spec            // parsed by Validate
}

// spec is a File's parameters checked and parsed.
type spec struct {
	path    string // cleaned, without a trailing "/"
	dir     bool
	absent  bool
	content []byte // nil: not managed (hasContent tells an empty content apart)
	hasCont bool
	source  string // cleaned; "" none
	mode    uint32 // permission bits, with setuid, setgid, sticky
	hasMode bool
	recurse bool
	purge   bool
	force   bool

	warnings []string // parameters accepted but ignored
}

// Validate checks the parameters. It reports every problem at once, each
// naming the parameter and what would be valid. Owner and group names are
// resolved when applied (owner), so that a graph may create them.
func (r *File) Validate() error {
	s, err := r.parse()
	if err != nil {
		return err
	}
	r.s = s
	return nil
}

func (r *File) parse() (*spec, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	s := &spec{recurse: r.Recurse, purge: r.Purge, force: r.Force}
	warn := func(w string) { s.warnings = append(s.warnings, w) }

	switch {
	case r.Path == "":
		bad("path: missing: want an absolute path, e.g. path: /etc/motd (a trailing / makes it a directory)")
	case strings.ContainsRune(r.Path, 0):
		bad("path: %q contains a NUL byte", r.Path)
	case !filepath.IsAbs(r.Path):
		bad("path: %q is relative: want an absolute path, e.g. /etc/motd", r.Path)
	default:
		s.dir = IsDirPath(r.Path)
		s.path = filepath.Clean(r.Path)
		if base := filepath.Base(s.path); IsTemp(base) {
			bad("path: %q has the name of a temporary file of the file resource (%s): choose another name", r.Path, base)
		}
	}

	switch r.State {
	case "", StateExists:
	case StateAbsent:
		s.absent = true
	default:
		bad("state: %q is invalid: want exists (the default) or absent", r.State)
	}

	// The original mgmt accepted content, and a source without recurse, on a
	// directory, and ignored them: so do we, with a warning.
	if r.Content != nil {
		switch {
		case s.dir:
			warn("content: ignored: a directory (path ending in /) has no content: remove the trailing / to manage a file, or use source with recurse: true to fill the directory")
		case r.Source != "":
			bad("content and source: give only one: content is the file's exact text, source copies a local file")
		default:
			s.content, s.hasCont = []byte(*r.Content), true
		}
	}
	if r.Source != "" {
		switch {
		case strings.ContainsRune(r.Source, 0):
			bad("source: %q contains a NUL byte", r.Source)
		case !filepath.IsAbs(r.Source):
			bad("source: %q is relative: want an absolute path", r.Source)
		case s.dir && !r.Recurse:
			warn("source: ignored: a directory is filled from its source only with recurse: true")
		default:
			s.source = filepath.Clean(r.Source)
			if s.absent || (r.Recurse && !s.dir) { // nothing to copy, or refused below
				break
			}
			if err := checkSource(s.source, s.dir && r.Recurse); err != nil {
				bad("source: %w", err)
			}
		}
	}
	if r.Recurse && (!s.dir || r.Source == "") {
		bad("recurse: needs a directory path (ending in /) and a source directory to copy")
	}
	if r.Purge && !r.Recurse {
		bad("purge: needs recurse: true and a source directory: it removes what the source does not have")
	}
	if s.path == "/" && (s.absent || r.Purge || r.Force) {
		bad("path: / cannot be removed, purged or forced: want a directory below it")
	}

	if r.Mode != "" {
		m, err := parseMode(r.Mode)
		if err != nil {
			bad("mode: %q is invalid: want 3 or 4 octal digits, e.g. \"0644\" or \"2775\"", r.Mode)
		}
		s.mode, s.hasMode = m, true
	}
	// Names are resolved by CheckApply, not here: the graph may create
	// the user or group (an automatic edge runs it first).
	if r.Owner != "" {
		if err := checkID(r.Owner); err != nil {
			bad("owner: %q: %w: want a user name or a numeric uid", r.Owner, err)
		}
	}
	if r.GroupName != "" {
		if err := checkID(r.GroupName); err != nil {
			bad("group: %q: %w: want a group name or a numeric gid", r.GroupName, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// parseMode reads 3 or 4 octal digits.
func parseMode(m string) (uint32, error) {
	if len(m) < 3 || len(m) > 4 {
		return 0, strconv.ErrSyntax
	}
	v, err := strconv.ParseUint(m, 8, 32)
	if err != nil {
		return 0, err
	}
	return uint32(v), nil
}

// checkID refuses an owner or group that no lookup could resolve.
func checkID(s string) error {
	if strings.ContainsRune(s, 0) { // the C lookup would stop at the NUL: "root\x00x" is not root
		return errors.New("contains a NUL byte")
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n == 1<<32-1 {
		return errors.New("-1 is not an id")
	}
	return nil
}

// owner resolves the owner and group of s as the host has them now: -1 for
// what is not managed.
func (r *File) owner() (uid, gid int, err error) {
	uid, gid = -1, -1
	if r.Owner != "" {
		uid, err = lookupID(r.Owner, func(name string) (string, error) {
			u, err := user.Lookup(name)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("owner: %q: %w: want a user name known on this host or a numeric uid (a user resource of the graph that creates it is applied first)", r.Owner, err)
		}
	}
	if r.GroupName != "" {
		gid, err = lookupID(r.GroupName, func(name string) (string, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("group: %q: %w: want a group name known on this host or a numeric gid (a group resource of the graph that creates it is applied first)", r.GroupName, err)
		}
	}
	return uid, gid, nil
}

// lookupID turns a name or a number (checked by checkID) into a numeric id.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if err := checkID(s); err != nil {
		return 0, err
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return int(n), nil
	}
	id, err := lookup(s)
	if err != nil {
		var unknownUser user.UnknownUserError
		var unknownGroup user.UnknownGroupError
		if errors.As(err, &unknownUser) || errors.As(err, &unknownGroup) {
			return 0, errUnknown
		}
		return 0, err
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("id %q is not numeric: %w", id, err)
	}
	return n, nil
}

var errUnknown = errors.New("unknown on this host")

// checkSource refuses a source that exists and is of the wrong type: a
// fifo, a socket or a device (whose open could block or have side
// effects), or a directory where a file is wanted, or the reverse. A
// missing source is left for CheckApply: another resource may create it.
func checkSource(path string, dir bool) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	switch t := st.Mode & unix.S_IFMT; {
	case dir && t != unix.S_IFDIR:
		return fmt.Errorf("%s is a %s: want a directory to copy with recurse", path, typeName(fileMode(st.Mode)))
	case !dir && t != unix.S_IFREG:
		return fmt.Errorf("%s is a %s: %w", path, typeName(fileMode(st.Mode)), errNotRegular)
	}
	return nil
}

// Warnings lists the parameters Validate accepted but ignores (content on
// a directory, as the original mgmt allowed), one sentence each. Init logs
// them; a front end may print them at validation.
func (r *File) Warnings() []string {
	if r.s == nil {
		return nil
	}
	return slices.Clone(r.s.warnings)
}

// spec returns the parsed parameters, parsing them if Validate was not
// called.
func (r *File) spec() (*spec, error) {
	if r.s == nil {
		if err := r.Validate(); err != nil {
			return nil, err
		}
	}
	return r.s, nil
}

// SetName makes an absolute resource name the path when no path is given,
// as the original mgmt did (name: /etc/motd).
func (r *File) SetName(name string) {
	r.name = name
	if r.Path == "" && filepath.IsAbs(name) {
		r.Path = name
	}
}

// Init keeps the logger, and logs the warnings of Validate.
func (r *File) Init(env engine.Env) error {
	r.log = env.Logger
	for _, w := range r.Warnings() {
		r.logger().Warn(w)
	}
	return nil
}

func (r *File) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "file["+r.Path+"]")
	}
	return r.log
}

// Watch reports a change to the path (for a tree, anything in it) or to the
// source, through the process's one inotify instance.
func (r *File) Watch(ctx context.Context, ev engine.Events) error {
	cancels, err := r.subscribe(ev.Dirty)
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	if err != nil {
		return err
	}
	ev.Running()
	<-ctx.Done()
	return nil
}

// subscribe asks for fn to be called on a change to the path or the
// source. It returns the cancels of what it subscribed, even on an error.
func (r *File) subscribe(fn func()) ([]func(), error) {
	s, err := r.spec()
	if err != nil {
		return nil, err
	}
	w := r.fsw
	if w == nil {
		if w, err = fswatch.Default(); err != nil {
			return nil, err
		}
	}
	watch := w.Watch
	if s.recurse && !s.absent {
		watch = w.WatchTree
	}
	var cancels []func()
	cancel, err := watch(s.path, fn)
	if err != nil {
		return nil, err
	}
	cancels = append(cancels, cancel)
	if s.source != "" && !s.absent {
		if cancel, err = watch(s.source, fn); err != nil {
			return cancels, err
		}
		cancels = append(cancels, cancel)
	}
	return cancels, nil
}

// Close has nothing to release: Watch drops its watches when it returns.
func (r *File) Close() error { return nil }

// UIDs names the path the resource manages: cleaned, without a trailing
// "/", so that a directory x/ and a file x are one path with two owners,
// refused when the graph is compiled. A file whose whole content it
// manages (content, source, or absent) also owns that content, so that a
// line resource on the same file is refused as a second owner.
func (r *File) UIDs() []engine.UID {
	if !filepath.IsAbs(r.Path) {
		return nil
	}
	p := filepath.Clean(r.Path)
	uids := []engine.UID{{Kind: "file", Key: p}}
	if r.State == StateAbsent || !IsDirPath(r.Path) && (r.Content != nil || r.Source != "") {
		uids = append(uids, engine.UID{Kind: ContentUID, Key: p})
	}
	return uids
}

// IsDirPath tells whether a path names a directory by its spelling: a
// trailing slash, or a last element of . or .. (which only a directory
// has), or the root.
func IsDirPath(p string) bool {
	if strings.HasSuffix(p, "/") || filepath.Clean(p) == "/" {
		return true
	}
	b := p[strings.LastIndexByte(p, '/')+1:]
	return b == "." || b == ".."
}

// ContentUID is the UID kind of a file's whole content.
const ContentUID = "content"

// AutoEdges asks for an edge from the nearest managed directory above the
// path, from the user and group resources of its owner and group, and from
// the resource managing the source, if any.
func (r *File) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if !filepath.IsAbs(r.Path) {
		return nil, nil
	}
	p := filepath.Clean(r.Path)
	var up []engine.UID
	for d := p; d != "/"; {
		d = filepath.Dir(d)
		up = append(up, engine.UID{Kind: "file", Key: d})
	}
	var edges []engine.AutoEdge
	if len(up) > 0 {
		edges = append(edges, engine.AutoEdge{UIDs: up})
	}
	if r.Owner != "" {
		edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "user", Key: r.Owner}}})
	}
	if r.GroupName != "" {
		edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "group", Key: r.GroupName}}})
	}
	if filepath.IsAbs(r.Source) {
		src := filepath.Clean(r.Source)
		if src != p && !strings.HasPrefix(src, strings.TrimSuffix(p, "/")+"/") {
			edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "file", Key: src}}})
		}
	}
	return edges, nil
}

// ErrCollect is returned by Collect for a resource that must not be
// collected as it is.
var ErrCollect = errors.New("file cannot be collected")

// CheckPattern checks a collect pattern: the directory collected files
// are placed in, absolute.
func (r *File) CheckPattern(pattern string) error {
	if !filepath.IsAbs(pattern) || strings.ContainsRune(pattern, 0) {
		return fmt.Errorf("pattern %s: want an absolute directory, e.g. /srv/collected/", quote.String(pattern))
	}
	return nil
}

// Collect returns the file as a collecting host manages it: the same
// parameters, with the path re-based into the pattern directory (pattern +
// the base name). It refuses what would escape that directory, a source
// (it names a file on the exporting host), and setuid or setgid modes.
func (r *File) Collect(pattern string) (engine.Res, error) {
	if err := r.CheckPattern(pattern); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCollect, err)
	}
	if !filepath.IsAbs(r.Path) {
		return nil, fmt.Errorf("%w: path %q is not absolute", ErrCollect, r.Path)
	}
	dir := filepath.Clean(pattern)
	base := filepath.Base(filepath.Clean(r.Path))
	switch {
	case base == "/", base == ".", base == "..", base == "",
		strings.ContainsAny(base, "/\x00"), filepath.IsAbs(base):
		return nil, fmt.Errorf("%w: path %q has no base name to place in %s", ErrCollect, r.Path, dir)
	case IsTemp(base):
		// It would land beside a local file as that file's temporary file.
		return nil, fmt.Errorf("%w: %q has the name of a temporary file of the file resource", ErrCollect, base)
	case r.Source != "":
		return nil, fmt.Errorf("%w: it has source %q, a file on the exporting host", ErrCollect, r.Source)
	}
	c := &File{
		Path:      filepath.Join(dir, base),
		State:     r.State,
		Mode:      r.Mode,
		Owner:     r.Owner,
		GroupName: r.GroupName,
		Recurse:   r.Recurse,
		Purge:     r.Purge,
		Force:     r.Force,
	}
	if IsDirPath(r.Path) {
		c.Path += "/"
	}
	if filepath.Dir(filepath.Clean(c.Path)) != dir {
		return nil, fmt.Errorf("%w: %q would land outside %s", ErrCollect, c.Path, dir)
	}
	if r.Content != nil {
		content := *r.Content
		c.Content = &content
	}
	if c.Mode != "" {
		if m, err := parseMode(c.Mode); err == nil && m&0o6000 != 0 {
			return nil, fmt.Errorf("%w: mode %s sets setuid or setgid", ErrCollect, c.Mode)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCollect, err)
	}
	return c, nil
}
