// Package facts gathers what a host is (its names, OS, hardware, addresses
// and labels) under stable names, for graphs rendered per host.
package facts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Facts is what one host is. Its fact names (the keys of Map, and of
// `mgmt facts` output) are listed in docs/fleet.md.
type Facts struct {
	Hostname    string // the kernel's hostname, or Options.Hostname
	FQDN        string // see fqdn: from the hostname or /etc/hosts, never DNS
	OS          OS
	Arch        string // runtime.GOARCH: the architecture mgmt was built for
	Machine     string // the kernel's machine (uname -m), e.g. x86_64, aarch64
	Kernel      string // the kernel release (uname -r)
	CPUs        int    // CPUs this process may run on (runtime.NumCPU)
	MemoryBytes uint64 // MemTotal of /proc/meminfo
	// Addresses are the non-loopback, non-link-local addresses of the
	// interfaces that are up, sorted by interface name, then address.
	Addresses []Address
	Version   string            // the mgmt version
	Labels    map[string]string // from --label; never nil
}

// OS is what /etc/os-release says (os-release(5)); a field it lacks is "",
// except ID, which defaults to "linux" as the format specifies.
type OS struct {
	ID              string // e.g. debian, ubuntu, fedora
	IDLike          string // space-separated, e.g. "rhel centos fedora"
	Name            string
	PrettyName      string
	Version         string
	VersionID       string // e.g. 12, 24.04
	VersionCodename string // e.g. bookworm
}

// Address is one address of an interface, with its prefix length
// (10.0.0.5/24: the host's address, not the network's).
type Address struct {
	Interface string
	Prefix    netip.Prefix
}

// Options says how to gather facts. The zero value gathers this machine's.
type Options struct {
	// Hostname, when set, replaces the kernel's hostname (mgmt's --hostname).
	Hostname string
	// Labels are the host's labels, as ParseLabels returns them; Gather
	// refuses one ParseLabel would (a *LabelError).
	Labels map[string]string
	// Version is the mgmt version.
	Version string
	// Root is where etc/ and proc/ are read from ("" or "/": this machine).
	// Under another root (a test fixture), nothing is asked of the running
	// kernel but the CPU count, and Addresses is empty.
	Root string
}

// Gather returns the host's facts. It makes no network request: every fact
// comes from local files and system calls.
func Gather(ctx context.Context, opt Options) (*Facts, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root := opt.Root
	if root == "" {
		root = "/"
	}
	live := filepath.Clean(root) == "/" // this machine, not a fixture
	f := &Facts{
		Hostname: opt.Hostname,
		Arch:     runtime.GOARCH,
		CPUs:     runtime.NumCPU(),
		Version:  opt.Version,
		Labels:   make(map[string]string, len(opt.Labels)),
	}
	for _, k := range slices.Sorted(maps.Keys(opt.Labels)) {
		if _, _, err := ParseLabel(k + "=" + opt.Labels[k]); err != nil {
			return nil, err
		}
		f.Labels[k] = opt.Labels[k]
	}
	var uts *unix.Utsname
	uname := func() (*unix.Utsname, error) {
		if uts == nil {
			uts = new(unix.Utsname)
			if err := unix.Uname(uts); err != nil {
				return nil, fmt.Errorf("uname: %w", err)
			}
		}
		return uts, nil
	}
	// kernel reads a /proc/sys/kernel file, or uname's field on this machine
	// when the file is missing (kernel/arch is young: Linux 6.1).
	kernel := func(name string, field func(*unix.Utsname) []byte) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel", name))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !live || !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		u, err := uname()
		if err != nil {
			return "", err
		}
		return unix.ByteSliceToString(field(u)), nil
	}
	var err error
	if f.Hostname == "" {
		if f.Hostname, err = kernel("hostname", func(u *unix.Utsname) []byte { return u.Nodename[:] }); err != nil {
			return nil, fmt.Errorf("hostname: %w", err)
		}
	}
	if f.Kernel, err = kernel("osrelease", func(u *unix.Utsname) []byte { return u.Release[:] }); err != nil {
		return nil, fmt.Errorf("kernel release: %w", err)
	}
	if f.Machine, err = kernel("arch", func(u *unix.Utsname) []byte { return u.Machine[:] }); err != nil {
		return nil, fmt.Errorf("machine: %w", err)
	}
	if f.FQDN, err = fqdn(root, f.Hostname); err != nil {
		return nil, err
	}
	if f.OS, err = readOSRelease(root); err != nil {
		return nil, err
	}
	if f.MemoryBytes, err = memTotal(filepath.Join(root, "proc/meminfo")); err != nil {
		return nil, err
	}
	f.Addresses = []Address{}
	if live {
		ifs, err := interfaces()
		if err != nil {
			return nil, err
		}
		f.Addresses = addresses(ifs)
	}
	return f, nil
}

// fqdn is the hostname when it has a dot; else the first name of the
// /etc/hosts line that lists the hostname, when that name has a dot (what
// `hostname --fqdn` finds on most machines, without asking DNS); else the
// hostname.
func fqdn(root, hostname string) (string, error) {
	if strings.Contains(hostname, ".") {
		return hostname, nil
	}
	p := filepath.Join(root, "etc/hosts")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return hostname, nil
	}
	if err != nil {
		return "", fmt.Errorf("fqdn: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 || !slices.Contains(fields[1:], hostname) {
			continue
		}
		if canon := fields[1]; strings.HasPrefix(canon, hostname+".") {
			return canon, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("fqdn: %s: %w", p, err)
	}
	return hostname, nil
}

// memTotal reads MemTotal (in kB, which the kernel means as KiB) from a
// meminfo file.
func memTotal(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("memory: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(rest), " ")
		kib, err := strconv.ParseUint(num, 10, 64)
		if err != nil || unit != "kB" || kib > (1<<64-1)/1024 {
			return 0, fmt.Errorf("memory: %s: bad MemTotal line %q", path, strings.TrimSpace(line))
		}
		return kib * 1024, nil
	}
	return 0, fmt.Errorf("memory: %s: no MemTotal line", path)
}
