package testhost

import (
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maskedUnits are units of the real machine's image that have no business
// in a test host (the admin's enabled units are masked as well, see
// prepare).
var maskedUnits = []string{
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
	"fstrim.timer", "man-db.timer", "e2scrub_reap.service", "systemd-timesyncd.service",
	"systemd-pstore.service", "getty@tty1.service", "console-getty.service",
	"systemd-modules-load.service", "systemd-sysctl.service", "systemd-binfmt.service",
	"proc-sys-fs-binfmt_misc.automount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
	"sys-kernel-config.mount", "sys-fs-fuse-connections.mount", "dev-hugepages.mount",
	"systemd-firstboot.service", "systemd-repart.service", "postgresql.service",
}

// generatorDirs hold systemd generators; all are masked in a host (no
// fstab, gettys, SysV scripts or crypt devices to generate units for), which
// also saves a good part of the boot time.
var generatorDirs = []string{
	"/etc/systemd/system-generators", "/usr/local/lib/systemd/system-generators",
	"/lib/systemd/system-generators", "/usr/lib/systemd/system-generators",
}

// devices are the character devices of a host's /dev.
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// TargetUnit is the default target of every host: basic.target and D-Bus.
const TargetUnit = "testhost.target"

const targetText = `[Unit]
Description=Test host (basic.target and D-Bus)
Requires=basic.target
Wants=dbus.service
After=basic.target dbus.service
AllowIsolate=yes
`

// prepare writes the host's own configuration into its overlay (or its
// fresh /dev) through its root, after verify and before systemd starts.
func (h *Host) prepare(opts Options) error {
	if err := h.makeDev(opts.Loop); err != nil {
		return err
	}
	files := []struct {
		name string
		data string
		mode fs.FileMode
	}{
		{"/etc/machine-id", newMachineID() + "\n", 0o444},
		{"/etc/hostname", h.name + "\n", 0o644},
		{"/etc/systemd/system/" + TargetUnit, targetText, 0o644},
		// volatile: the real machine's journal files are not copied up
		{"/etc/systemd/journald.conf.d/testhost.conf", "[Journal]\nStorage=volatile\nRuntimeMaxUse=8M\n", 0o644},
	}
	for _, f := range files {
		if err := h.WriteFile(f.name, []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	masks := append([]string(nil), maskedUnits...)
	// Whatever the administrator of the real machine enabled is not ours.
	wants, err := h.readDirNames("/etc/systemd/system", func(e fs.DirEntry) bool { return e.IsDir() && path.Ext(e.Name()) == ".wants" })
	if err != nil {
		return err
	}
	for _, w := range wants {
		units, err := h.readDirNames("/etc/systemd/system/"+w, func(fs.DirEntry) bool { return true })
		if err != nil {
			return err
		}
		for _, u := range units {
			if !isEssentialUnit(u) {
				masks = append(masks, u)
			}
		}
	}
	for _, u := range masks {
		if err := h.mask("/etc/systemd/system/" + u); err != nil {
			return err
		}
	}
	for _, dir := range generatorDirs {
		gens, err := h.readDirNames(dir, func(fs.DirEntry) bool { return true })
		if err != nil {
			return err
		}
		for _, g := range gens {
			if err := h.mask("/etc/systemd/system-generators/" + g); err != nil {
				return err
			}
		}
	}
	if opts.AptRepo != "" {
		if err := h.useAptRepo(opts.AptRepo); err != nil {
			return err
		}
	}
	return nil
}

func isEssentialUnit(u string) bool {
	for _, p := range []string{"dbus", "systemd-journald"} {
		if len(u) >= len(p) && u[:len(p)] == p {
			return true
		}
	}
	return false
}

// mask points name at /dev/null, replacing what is there.
func (h *Host) mask(name string) error {
	if err := h.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return h.symlink("/dev/null", name)
}

// readDirNames lists the entries of a directory inside the host that keep
// returns true for; a missing directory has none.
func (h *Host) readDirNames(dir string, keep func(fs.DirEntry) bool) ([]string, error) {
	d, err := h.inRoot(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("testhost: reading %s:%s: %w", h.name, dir, err)
	}
	var names []string
	for _, e := range ents {
		if keep(e) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// loopNodes is how many /dev/loopN nodes a host with Options.Loop gets.
const loopNodes = 64

// makeDev fills the host's fresh /dev (a tmpfs of its own) with the few
// device nodes and links a container has, and with loop, the loop nodes.
func (h *Host) makeDev(loop bool) error {
	dev, err := h.inRoot("/dev", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	fd := int(dev.Fd())
	for _, d := range devices {
		if err := unix.Mknodat(fd, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("testhost: mknod /dev/%s: %w", d.name, err)
		}
		// mknod is subject to the umask
		if err := unix.Fchmodat(fd, d.name, 0o666, 0); err != nil {
			return fmt.Errorf("testhost: chmod /dev/%s: %w", d.name, err)
		}
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := unix.Symlinkat(target, fd, name); err != nil {
			return fmt.Errorf("testhost: /dev/%s: %w", name, err)
		}
	}
	if loop {
		return makeLoopNodes(fd)
	}
	return nil
}

// makeLoopNodes makes /dev/loop-control and the /dev/loopN nodes, 0600,
// in the host's /dev (fd), leaving out the devices the machine has attached
// now (their /sys/block/loopN/loop/backing_file exists), so that a host
// cannot open what the machine uses through them.
func makeLoopNodes(fd int) error {
	mk := func(name string, mode uint32, major, minor uint32) error {
		if err := unix.Mknodat(fd, name, mode|0o600, int(unix.Mkdev(major, minor))); err != nil {
			return fmt.Errorf("testhost: mknod /dev/%s: %w", name, err)
		}
		if err := unix.Fchmodat(fd, name, 0o600, 0); err != nil {
			return fmt.Errorf("testhost: chmod /dev/%s: %w", name, err)
		}
		return nil
	}
	if err := mk("loop-control", unix.S_IFCHR, 10, 237); err != nil {
		return err
	}
	// With the module's max_part, each device has 2^fls(max_part) minors.
	shift := 0
	if b, err := os.ReadFile("/sys/module/loop/parameters/max_part"); err == nil {
		if mp, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && mp > 0 {
			shift = bits.Len(uint(mp))
		}
	}
	for n := range uint32(loopNodes) {
		if _, err := os.Stat(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", n)); err == nil {
			continue
		}
		if err := mk(fmt.Sprintf("loop%d", n), unix.S_IFBLK, 7, n<<shift); err != nil {
			return err
		}
	}
	return nil
}
