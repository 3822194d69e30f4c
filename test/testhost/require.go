package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mgmtconfig/mgmt/test/skip"
)

// ErrUnsupported is wrapped by Start's error when this machine cannot run
// test hosts (not root, no overlayfs, no namespaces, no systemd, ...).
var ErrUnsupported = errors.New("testhost: test hosts cannot run here")

// RequireEnv is the environment variable that turns Require's skips into
// failures (CI sets it to 1: a machine that cannot run the real-component
// tests must not pass silently). It is skip.Env.
const RequireEnv = skip.Env

// toolsNeeded are run by the boot script or the harness.
var toolsNeeded = []string{"sh", "nsenter", "setpriv", "mount", "umount", "pivot_root", "mknod", "stat", "hostname", "grep"}

// Missing lists what this machine lacks to run test hosts, or nothing.
// The checks, including a trial clone into fresh namespaces and a cgroup,
// run once per process.
func Missing() []string { return missing() }

var missing = sync.OnceValue(func() []string {
	var miss []string
	if uid := os.Geteuid(); uid != 0 {
		miss = append(miss, fmt.Sprintf("root (running as uid %d)", uid))
	}
	if fsys, err := os.ReadFile("/proc/filesystems"); err != nil || !bytes.Contains(fsys, []byte("\toverlay\n")) {
		miss = append(miss, "overlayfs (not in /proc/filesystems)")
	}
	for _, ns := range []string{"mnt", "pid", "uts", "ipc", "net", "cgroup"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			miss = append(miss, ns+" namespaces")
		}
	}
	if _, err := cgroup2Mount(); err != nil {
		miss = append(miss, "a cgroup2 hierarchy")
	}
	if st, err := os.Stat(SystemdPath); err != nil || st.Mode()&0o111 == 0 {
		miss = append(miss, "systemd ("+SystemdPath+")")
	}
	if _, err := os.Stat("/usr/bin/dbus-daemon"); err != nil {
		miss = append(miss, "dbus-daemon (package dbus)")
	}
	for _, t := range toolsNeeded {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, "the "+t+" command")
		}
	}
	if len(miss) == 0 {
		if err := probeClone(); err != nil {
			miss = append(miss, "namespaces and cgroups for a test host: "+err.Error())
		}
	}
	return miss
})

// probeClone starts /bin/true the way a host's PID 1 is started: into its
// own cgroup and in new namespaces.
func probeClone() error {
	cg, err := newCgroup(fmt.Sprintf("%d-probe", os.Getpid()))
	if err != nil {
		return err
	}
	defer cg.remove()
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		Unshareflags: unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP,
		UseCgroupFD:  true,
		CgroupFD:     cg.fd(),
	}
	return cmd.Run()
}

// Require skips the test, naming what is missing, when this machine cannot
// run test hosts; with MGMT_REQUIRE_TESTHOSTS=1 it fails the test instead.
// With -short (unit tests only) it always skips.
func Require(tb testing.TB) {
	tb.Helper()
	RequireTools(tb)
}

// RequireTools is Require plus the named commands (for example "ping",
// "pkcon", "ip"), looked up on the real machine, whose root the hosts share.
func RequireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("test hosts are not booted with -short")
	}
	miss := append([]string(nil), Missing()...)
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, "the "+t+" command (test/setup-deps.sh installs it)")
		}
	}
	skipOrFail(tb, miss)
}

// skipOrFail skips the test when something is missing, or fails it when
// MGMT_REQUIRE_TESTHOSTS=1.
func skipOrFail(tb testing.TB, miss []string) {
	tb.Helper()
	if len(miss) == 0 {
		return
	}
	skip.OrFail(tb, "test hosts cannot run here: missing %s", strings.Join(miss, ", "))
}

// bootTimeout bounds StartT: boot, readiness and apt-get update.
const bootTimeout = 60 * time.Second

// StartT boots a ready host for a test (after Require) and registers its
// Stop with tb.Cleanup; when the test has failed, the host's journal is
// logged first. It fails the test if the host does not boot.
func StartT(tb testing.TB, opts Options) *Host {
	tb.Helper()
	Require(tb)
	if opts.Logger == nil {
		opts.Logger = TestLogger(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	h, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("booting test host: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			h.logDiagnostics(tb)
		}
		if err := h.Stop(); err != nil {
			tb.Errorf("stopping test host %s: %v", h.name, err)
		}
	})
	return h
}

func (h *Host) logDiagnostics(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "journalctl", "-b", "--no-pager", "-n", "150", "-o", "short-monotonic")
	if err != nil {
		tb.Logf("host %s: journal: %v", h.name, err)
	}
	tb.Logf("host %s journal (last lines):\n%s%s", h.name, out, h.consoleTail())
}

// TestLogger returns a slog.Logger that writes to the test's output.
func TestLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
