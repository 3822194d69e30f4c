package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// peerPackages are the Debian packages the comparison needs, each with the
// command that proves it is there. python3-apt is what Ansible's apt module
// runs on (it would otherwise try to install it itself, inside the host,
// from a repository that does not have it).
var peerPackages = []struct {
	pkg, cmd, tool string
}{
	{"puppet", "puppet", toolPuppet},
	{"ansible-core", "ansible-playbook", toolAnsible},
	{"python3-apt", "", toolAnsible},
	{"cfengine3", "cf-agent", toolCFEngine},
	{"graphviz", "dot", ""},
}

// installed reports whether dpkg has pkg installed.
func installed(ctx context.Context, pkg string) bool {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output()
	return err == nil && string(out) == "installed"
}

// installPeers installs the missing peer packages from Debian's
// repositories: one apt-get update, then one install; if that fails, each
// package alone, so that one that cannot be installed does not hold back
// the others. It returns the packages that could not be installed, with
// why.
func installPeers(ctx context.Context, log *slog.Logger) map[string]error {
	var missing []string
	for _, p := range peerPackages {
		if !installed(ctx, p.pkg) {
			missing = append(missing, p.pkg)
		}
	}
	failed := map[string]error{}
	if len(missing) == 0 {
		log.Info("peers already installed")
		return failed
	}
	log.Info("installing peers", "packages", missing)
	// Keep maintainer scripts from starting the peers' daemons, as
	// test/setup-deps.sh does.
	const prc = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(prc); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(prc, []byte("#!/bin/sh\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(prc)
		}
	}
	apt := func(args ...string) error {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(out, 400))
		}
		return nil
	}
	if err := apt("update", "-q"); err != nil {
		log.Warn("apt-get update failed; trying to install anyway", "err", err)
	}
	install := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	if err := apt(install...); err != nil {
		log.Warn("installing all peers at once failed; one by one", "err", err)
		for _, p := range missing {
			if err := apt("install", "-y", "-q", "--no-install-recommends", p); err != nil {
				failed[p] = err
				log.Warn("cannot install", "package", p, "err", err)
			}
		}
	}
	return failed
}

// versionOf runs argv and returns the first line of its output.
func versionOf(ctx context.Context, argv ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + basePath, "LANG=C.UTF-8", "HOME=/nonexistent"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "unavailable (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

func debVersion(ctx context.Context, pkg string) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return "not installed"
	}
	return string(out)
}

// machine describes where the numbers were measured.
type machine struct {
	CPU, Cores, Memory, Kernel, OS, FS string
	LoadStart, LoadEnd                 string // /proc/loadavg's 1, 5 and 15 minute averages
}

// loadAvg returns the 1, 5 and 15 minute load averages: other work on the
// machine shows in every number measured.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "unknown"
}

func describeMachine(workDir string) machine {
	m := machine{Cores: strconv.Itoa(runtime.NumCPU())}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				m.Memory = fmt.Sprintf("%.1f GiB", kib/(1<<20))
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	m.FS = fsType(workDir)
	return m
}

// fsType names the filesystem holding dir, from /proc/self/mountinfo.
func fsType(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	best, typ := "", "unknown"
	for _, line := range bytes.Split(b, []byte("\n")) {
		pre, post, ok := strings.Cut(string(line), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		mp := f[4]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, g[0]
		}
	}
	return typ
}
