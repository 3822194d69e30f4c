package testhost

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrIsolation is wrapped by every error that stops a host from booting
// because it would not be isolated from the real machine.
var ErrIsolation = errors.New("testhost: isolation check failed")

// Mount is one line of /proc/PID/mountinfo.
type Mount struct {
	MountPoint string
	Root       string   // path of the mount's root within its filesystem
	Options    []string // per-mount options (ro, nosuid, ...)
	Optional   []string // propagation tags (shared:N, master:N, ...)
	FSType     string
	Source     string
}

// ReadOnly reports whether the mount is read-only.
func (m Mount) ReadOnly() bool { return slices.Contains(m.Options, "ro") }

// readMountInfo parses a mountinfo file (see proc(5)).
func readMountInfo(path string) ([]Mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if len(fields) < 10 || sep < 6 || len(fields) < sep+3 {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Text())
		}
		ms = append(ms, Mount{
			Root:       unescapeMount(fields[3]),
			MountPoint: unescapeMount(fields[4]),
			Options:    strings.Split(fields[5], ","),
			Optional:   fields[6:sep],
			FSType:     fields[sep+1],
			Source:     unescapeMount(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ms, nil
}

// unescapeMount undoes the octal escapes (\040 for space, ...) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			ok := true
			for _, d := range s[i+1 : i+4] {
				if d < '0' || d > '7' {
					ok = false
					break
				}
				c = c*8 + byte(d-'0')
			}
			if ok {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountPoints returns the mount points of the calling process's mount
// namespace, in mount order: what tests compare before and after.
func MountPoints() ([]string, error) {
	ms, err := readMountInfo("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.MountPoint + " " + m.FSType + " " + m.Source
	}
	return out, nil
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// allowedFS are the filesystem types a host may have mounted before systemd
// starts: the overlay root and fresh API filesystems.
var allowedFS = []string{"overlay", "proc", "sysfs", "cgroup2", "tmpfs", "devpts"}

// verify checks, from outside, that the process the boot script runs in is
// isolated: new namespaces, PID 1, overlay root, fresh read-only API
// filesystems, nothing shared with the real machine's mount table, an empty
// /tmp and its own cgroup. It is the harness's gate before systemd.
func (h *Host) verify(opts Options) error {
	var bad []string
	badf := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	proc := fmt.Sprintf("/proc/%d", h.pid)

	for _, ns := range []string{"mnt", "pid", "uts", "ipc", "cgroup", "net"} {
		mine, err := nsInode("/proc/self/ns/" + ns)
		if err != nil {
			badf("own %s namespace: %v", ns, err)
			continue
		}
		its, err := nsInode(proc + "/ns/" + ns)
		if err != nil {
			badf("host's %s namespace: %v", ns, err)
			continue
		}
		if mine == its {
			badf("%s namespace is the real machine's", ns)
		}
		if ns == "net" && opts.NetNS != "" {
			want, err := nsInode(netnsPath(opts.NetNS))
			if err != nil || want != its {
				badf("network namespace is not %s (%v)", opts.NetNS, err)
			}
		}
	}

	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		badf("status: %v", err)
	}
	nspid := ""
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
			nspid = strings.Join(strings.Fields(v), " ")
		}
	}
	if want := fmt.Sprintf("%d 1", h.pid); nspid != want {
		badf("NSpid is %q, want %q (PID 1 of a pid namespace one level below)", nspid, want)
	}

	mounts, err := readMountInfo(proc + "/mountinfo")
	if err != nil {
		badf("mountinfo: %v", err)
	}
	byPoint := map[string]Mount{}
	for _, m := range mounts {
		byPoint[m.MountPoint] = m // the last mount on a point is the visible one
		if !slices.Contains(allowedFS, m.FSType) && m.MountPoint != "/dev/console" {
			badf("unexpected %s mount on %s (source %s)", m.FSType, m.MountPoint, m.Source)
		}
		for _, o := range m.Optional {
			if strings.HasPrefix(o, "shared:") || strings.HasPrefix(o, "master:") {
				badf("mount %s propagates (%s)", m.MountPoint, o)
			}
		}
	}
	want := []struct {
		point, fstype string
		ro            bool
	}{
		{"/", "overlay", false},
		{"/proc", "proc", false},
		{"/proc/sys", "proc", true},
		{"/sys", "sysfs", true},
		{"/sys/fs/cgroup", "cgroup2", false},
		{"/dev", "tmpfs", false},
		{"/dev/pts", "devpts", false},
		{"/tmp", "tmpfs", false},
		{"/run", "tmpfs", false},
	}
	if _, err := os.Stat(proc + "/root/proc/sysrq-trigger"); err == nil {
		want = append(want, struct {
			point, fstype string
			ro            bool
		}{"/proc/sysrq-trigger", "proc", true})
	}
	for _, w := range want {
		m, ok := byPoint[w.point]
		switch {
		case !ok:
			badf("nothing mounted on %s", w.point)
		case m.FSType != w.fstype:
			badf("%s is %s, want %s", w.point, m.FSType, w.fstype)
		case w.ro && !m.ReadOnly():
			badf("%s is not read-only", w.point)
		}
	}
	if m, ok := byPoint["/sys/fs/cgroup"]; ok && m.Root != h.cg.rel {
		badf("/sys/fs/cgroup shows %s, want the host's own cgroup %s", m.Root, h.cg.rel)
	}
	if m, ok := byPoint["/"]; ok && !strings.Contains(","+strings.Join(m.Options, ",")+",", ",rw,") {
		badf("overlay root is not writable")
	}

	cg, err := os.ReadFile(proc + "/cgroup")
	if err != nil {
		badf("cgroup: %v", err)
	}
	if !slices.Contains(strings.Split(string(cg), "\n"), "0::"+h.cg.rel) {
		badf("PID 1 is not in cgroup %s: %q", h.cg.rel, cg)
	}

	var rootSt, itsSt unix.Stat_t
	if err := unix.Stat("/", &rootSt); err != nil {
		badf("stat /: %v", err)
	}
	if err := unix.Stat(proc+"/root", &itsSt); err != nil {
		badf("stat host root: %v", err)
	} else if itsSt.Dev == rootSt.Dev {
		badf("host's root is on the real root's device")
	}
	if ents, err := os.ReadDir(proc + "/root/tmp"); err != nil || len(ents) != 0 {
		badf("host's /tmp is not empty (%d entries, %v)", len(ents), err)
	}
	if _, err := os.Lstat(proc + "/root/.testhost-oldroot"); err == nil {
		badf("old root still present")
	}

	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrIsolation, strings.Join(bad, "; "))
	}
	return nil
}
