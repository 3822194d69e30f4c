// Package mount is the mount resource: a filesystem mounted (or not) on its mountpoint and its /etc/fstab entry, watched through /proc/self/mountinfo (poll for POLLPRI) and inotify on fstab.
package mount

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
)

func init() {
	engine.Register("mount", func() engine.Res { return &Mount{} })
}

// States a mount can be asked to be in.
const (
	StateMounted   = "mounted"
	StateUnmounted = "unmounted" // not mounted; the fstab entry kept
	StateAbsent    = "absent"    // not mounted, no fstab entry
	stateExists    = "exists"    // the original mgmt's name of mounted
)

// DefaultFstab is the file the entries are persisted to.
const DefaultFstab = "/etc/fstab"

// Options are mount options: written as a comma-separated string
// ("rw,size=16m") or, as the original mgmt had them, as a map
// ({rw: "", size: 16m}).
type Options []string

// UnmarshalYAML accepts both forms.
func (o *Options) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*o = nil
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*o = append(*o, s)
			}
		}
		return nil
	case yaml.MappingNode:
		var m map[string]string
		if err := n.Decode(&m); err != nil {
			return err
		}
		*o = nil
		for k, v := range m {
			if v == "" {
				*o = append(*o, k)
			} else {
				*o = append(*o, k+"="+v)
			}
		}
		sort.Strings(*o)
		return nil
	}
	return fmt.Errorf("options: want a string (rw,size=16m) or a map")
}

// Mount manages the filesystem on one mountpoint.
type Mount struct {
	Mountpoint string  `yaml:"mountpoint"` // absolute; default: the resource's name
	Device     string  `yaml:"device"`     // what mount(8) takes: /dev/sdb1, UUID=..., tmpfs, an image file (loop)
	Type       string  `yaml:"type"`       // the filesystem type
	Options    Options `yaml:"options"`
	State      string  `yaml:"state"`   // mounted (default; or exists), unmounted, absent
	Persist    *bool   `yaml:"persist"` // keep the fstab entry; default true
	Fstab      string  `yaml:"fstab"`   // default /etc/fstab
	Freq       int     `yaml:"freq"`
	PassNo     int     `yaml:"passno"`

	fsw *fswatch.Watcher
	mp  string // cleaned by Validate
}

// SetName makes an absolute resource name the mountpoint.
func (r *Mount) SetName(name string) {
	if r.Mountpoint == "" && filepath.IsAbs(name) {
		r.Mountpoint = name
	}
}

func (r *Mount) state() string {
	if r.State == "" || r.State == stateExists {
		return StateMounted
	}
	return r.State
}

func (r *Mount) persist() bool { return r.Persist == nil || *r.Persist }

func (r *Mount) fstab() string {
	if r.Fstab == "" {
		return DefaultFstab
	}
	return filepath.Clean(r.Fstab)
}

// fstabOnly are options that mean something to mount(8) or at boot, but
// that the kernel does not show in mountinfo.
var fstabOnly = []string{"defaults", "auto", "noauto", "nofail", "user", "users", "nouser", "owner", "group", "_netdev", "loop"}

// Validate checks the parameters; every problem is reported at once.
func (r *Mount) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	blank := func(s string) bool { return s == "" || hasBlank(s) }
	switch {
	case blank(r.Mountpoint) || !filepath.IsAbs(r.Mountpoint):
		bad("mountpoint: %q is invalid: want an absolute path without blanks, e.g. /mnt/data (or the resource's name)", r.Mountpoint)
	case filepath.Clean(r.Mountpoint) == "/":
		bad("mountpoint: / cannot be managed")
	default:
		r.mp = filepath.Clean(r.Mountpoint)
	}
	switch r.State {
	case "", StateMounted, stateExists, StateUnmounted, StateAbsent:
	default:
		bad("state: %q is invalid: want mounted (the default), unmounted or absent", r.State)
	}
	if r.state() != StateAbsent || r.persist() {
		if strings.HasPrefix(r.Device, "#") {
			bad("device: %q is invalid: a leading # would make its fstab line a comment", r.Device)
		} else if blank(r.Device) && r.state() != StateAbsent {
			bad("device: %q is invalid: want what mount takes, without blanks, e.g. /dev/sdb1, UUID=..., tmpfs", r.Device)
		}
		if blank(r.Type) && r.state() != StateAbsent {
			bad("type: %q is invalid: want the filesystem type, e.g. ext4, tmpfs", r.Type)
		}
	}
	for _, o := range r.Options {
		if blank(o) || strings.Contains(o, ",") {
			bad("options: %q is invalid: want options without blanks, e.g. rw,noatime,size=16m", o)
		}
	}
	if r.Fstab != "" && (!filepath.IsAbs(r.Fstab) || strings.ContainsRune(r.Fstab, 0)) {
		bad("fstab: %q is invalid: want an absolute path", r.Fstab)
	}
	if r.Freq < 0 || r.PassNo < 0 || r.PassNo > 2 {
		bad("freq, passno: %d, %d: want freq >= 0 and passno 0, 1 or 2", r.Freq, r.PassNo)
	}
	return errors.Join(errs...)
}

// hasBlank: s holds what would split an fstab or mountinfo field (any
// Unicode space, as strings.Fields and the kernel's readers see them) or a NUL.
func hasBlank(s string) bool {
	return strings.IndexFunc(s, unicode.IsSpace) >= 0 || strings.ContainsRune(s, 0)
}

// Init has nothing to prepare: the engine logs the changes CheckApply
// reports (engine.Changed).
func (r *Mount) Init(engine.Env) error { return nil }

// UIDs names the mountpoint.
func (r *Mount) UIDs() []engine.UID {
	if !filepath.IsAbs(r.Mountpoint) {
		return nil
	}
	return []engine.UID{{Kind: "mount", Key: filepath.Clean(r.Mountpoint)}}
}

// AutoEdges puts the mount after the file resource of its mountpoint
// directory, or the nearest managed directory above it, and after the
// mount of the nearest mountpoint above it.
func (r *Mount) AutoEdges(context.Context) ([]engine.AutoEdge, error) {
	if !filepath.IsAbs(r.Mountpoint) {
		return nil, nil
	}
	var files, mounts []engine.UID
	for p := filepath.Clean(r.Mountpoint); ; p = filepath.Dir(p) {
		files = append(files, engine.UID{Kind: "file", Key: p})
		if p != filepath.Clean(r.Mountpoint) {
			mounts = append(mounts, engine.UID{Kind: "mount", Key: p})
		}
		if p == "/" {
			break
		}
	}
	return []engine.AutoEdge{{UIDs: files}, {UIDs: mounts}}, nil
}

// Watch marks the vertex dirty when the mount table changes (the kernel
// flags /proc/self/mountinfo with POLLPRI) or the fstab is written.
func (r *Mount) Watch(ctx context.Context, ev engine.Events) error {
	if r.persist() {
		w := r.fsw
		if w == nil {
			var err error
			if w, err = fswatch.Default(); err != nil {
				return err
			}
		}
		cancel, err := w.Watch(r.fstab(), ev.Dirty)
		if err != nil {
			return err
		}
		defer cancel()
	}
	// A raw descriptor: os.Open would register it with the runtime's epoll,
	// whose wake-up would consume the kernel's one POLLPRI before ours.
	fd, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	defer unix.Close(fd)
	var wake [2]int // a pipe whose write end is closed when ctx ends
	if err := unix.Pipe2(wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	defer unix.Close(wake[0])
	stop := context.AfterFunc(ctx, func() { unix.Close(wake[1]) })
	defer func() {
		if stop() {
			unix.Close(wake[1])
		}
	}()
	buf := make([]byte, 64<<10)
	drain := func() error { // reading to the end re-arms POLLPRI
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return err
		}
		for {
			n, err := unix.Read(fd, buf)
			if n == 0 || err != nil {
				return nil
			}
		}
	}
	if err := drain(); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	ev.Running()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(wake[0]), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("mount: poll: %w", err)
		}
		if fds[1].Revents != 0 || ctx.Err() != nil {
			return nil
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			ev.Dirty()
			if err := drain(); err != nil {
				return fmt.Errorf("mount: %w", err)
			}
		}
	}
}

// Close has nothing to release.
func (r *Mount) Close() error { return nil }

// mounted is one line of mountinfo.
type mounted struct {
	source, fstype string
	opts           []string // the mount's and the superblock's
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// current returns the topmost mount on mp, or nil.
func current(mp string) (*mounted, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mount: %w", err)
	}
	var top *mounted
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 || unescape(f[4]) != mp {
			continue
		}
		top = &mounted{source: unescape(g[1]), fstype: g[0], opts: append(strings.Split(f[5], ","), strings.Split(g[2], ",")...)}
	}
	return top, nil
}

// missingOpts lists the wanted options the mount does not show.
func (r *Mount) missingOpts(m *mounted) []string {
	var miss []string
	for _, o := range r.Options {
		if slices.Contains(fstabOnly, o) || strings.HasPrefix(o, "x-") || slices.Contains(m.opts, o) {
			continue
		}
		miss = append(miss, o)
	}
	return miss
}

// fstabLine is the entry persisted for the mount.
func (r *Mount) fstabLine() string {
	opts := "defaults"
	if len(r.Options) > 0 {
		opts = strings.Join(r.Options, ",")
	}
	return fmt.Sprintf("%s %s %s %s %d %d", r.Device, r.mp, r.Type, opts, r.Freq, r.PassNo)
}

// editFstab returns the fstab with the mountpoint's entry as wanted, and
// the change, or nil.
func (r *Mount) editFstab(old []byte) ([]byte, *engine.Change) {
	var out []string
	var had []string
	want := r.fstabLine()
	found := false
	for _, l := range strings.Split(strings.TrimSuffix(string(old), "\n"), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(f[0], "#") && unescape(f[1]) == r.mp {
			had = append(had, l)
			if r.state() != StateAbsent && !found {
				out = append(out, want)
				found = true
			}
			continue
		}
		if l != "" || len(out) > 0 {
			out = append(out, l)
		}
	}
	if r.state() != StateAbsent && !found {
		out = append(out, want)
	}
	switch {
	case r.state() == StateAbsent && len(had) == 0:
		return old, nil
	case r.state() != StateAbsent && len(had) == 1 && had[0] == want:
		return old, nil
	}
	c := &engine.Change{Property: "fstab", From: strings.Join(had, "\n"), To: want, Why: r.fstab()}
	if r.state() == StateAbsent {
		c.To = "(absent)"
	}
	if c.From == "" {
		c.From = "(absent)"
	}
	return []byte(strings.Join(out, "\n") + "\n"), c
}

// CheckApply compares the mount table and the fstab with the wanted state
// and, with apply, mounts, remounts, unmounts and edits the fstab.
func (r *Mount) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if r.mp == "" {
		if err := r.Validate(); err != nil {
			return false, err
		}
	}
	changed := false
	report := func(c engine.Change) {
		changed = true
		engine.Changed(ctx, c)
	}
	if r.persist() {
		old, err := os.ReadFile(r.fstab())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("mount: %w", err)
		}
		if edited, c := r.editFstab(old); c != nil {
			if apply {
				if err := writeFile(r.fstab(), edited); err != nil {
					return false, err
				}
			}
			report(*c)
		}
	}
	m, err := current(r.mp)
	if err != nil {
		return changed, err
	}
	switch {
	case r.state() != StateMounted && m != nil:
		if apply {
			if err := unix.Unmount(r.mp, 0); err != nil {
				return changed, fmt.Errorf("mount: unmounting %s: %w", r.mp, err)
			}
		}
		report(engine.Change{Property: "state", From: "mounted (" + m.source + ", " + m.fstype + ")", To: r.state(), Why: "state: " + r.state()})
	case r.state() == StateMounted && m == nil:
		if apply {
			if err := os.MkdirAll(r.mp, 0o755); err != nil {
				return changed, fmt.Errorf("mount: %w", err)
			}
			if err := run(ctx, r.mountArgs(false)...); err != nil {
				return changed, err
			}
		}
		report(engine.Change{Property: "state", From: "unmounted", To: "mounted (" + r.Device + ", " + r.Type + ")", Why: "not in /proc/self/mountinfo"})
	case r.state() == StateMounted && (m.fstype != r.Type || !sameSource(r.Device, m.source)):
		return changed, fmt.Errorf("mount: %s has %s (%s) mounted, want %s (%s): unmount it first (state: unmounted), then mount the new one", r.mp, m.source, m.fstype, r.Device, r.Type)
	case r.state() == StateMounted:
		if miss := r.missingOpts(m); len(miss) > 0 {
			if apply {
				if err := run(ctx, r.mountArgs(true)...); err != nil {
					return changed, err
				}
			}
			report(engine.Change{Property: "options", From: strings.Join(m.opts, ","), To: strings.Join(r.Options, ","), Why: "missing " + strings.Join(miss, ",")})
		}
	}
	return changed, nil
}

// sysBlock is where the kernel shows block devices (a variable for tests).
var sysBlock = "/sys/block"

// sameSource tells whether got, the source /proc/self/mountinfo shows, is
// the wanted device: the same path or device node; a UUID= or LABEL= (not
// resolved, taken as the same); or a loop device whose backing file is the
// wanted image file (mount(8) attached it). A loop device whose backing
// file cannot be read is taken as the same, as no other answer is known.
func sameSource(want, got string) bool {
	if got == want || strings.HasPrefix(want, "UUID=") || strings.HasPrefix(want, "LABEL=") {
		return true
	}
	if !filepath.IsAbs(want) || !filepath.IsAbs(got) {
		return false // tmpfs, proc, server:/export: names, compared as such
	}
	wi, werr := os.Stat(want)
	if gi, err := os.Stat(got); werr == nil && err == nil && os.SameFile(wi, gi) {
		return true
	}
	if !strings.HasPrefix(got, "/dev/loop") {
		return false
	}
	b, err := os.ReadFile(filepath.Join(sysBlock, filepath.Base(got), "loop", "backing_file"))
	if err != nil {
		return true
	}
	backing := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
	if backing == want {
		return true
	}
	bi, err := os.Stat(backing)
	return werr == nil && err == nil && os.SameFile(wi, bi)
}

func (r *Mount) mountArgs(remount bool) []string {
	var opts []string
	if remount {
		opts = append(opts, "remount")
	}
	for _, o := range r.Options {
		if !strings.HasPrefix(o, "x-") && o != "noauto" && o != "nofail" {
			opts = append(opts, o)
		}
	}
	args := []string{"mount", "--no-mtab", "-t", r.Type}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	if remount {
		return append(args, r.mp)
	}
	return append(args, r.Device, r.mp)
}

func run(ctx context.Context, argv ...string) error {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount: %s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// writeFile replaces path with data: a temporary file beside it, synced
// and renamed over it, with the old file's mode (0644 when new).
func writeFile(path string, data []byte) error {
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := path + ".mgmt-mount"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("mount: writing %s: %w", path, err)
	}
	return nil
}
