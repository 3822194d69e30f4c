// Package testhost boots disposable test hosts: a real systemd as PID 1 with
// its own D-Bus, in fresh namespaces over an overlay of the real root whose
// writable layer is a private tmpfs, so that tests can drive real systemd,
// D-Bus and PackageKit without ever touching the machine they run on.
package testhost

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed boot.sh
var bootScript string

// SystemdPath is the systemd binary every host runs as its PID 1.
const SystemdPath = "/lib/systemd/systemd"

// sigHalt is SIGRTMIN+3 as glibc numbers it: systemd halts on it.
const sigHalt = syscall.Signal(37)

// ErrNotRunning is returned by operations on a host whose PID 1 has exited.
var ErrNotRunning = errors.New("testhost: host is not running")

// Options configure a host. The zero value boots a host with its own empty
// network namespace (loopback only) and a 512 MiB writable layer.
type Options struct {
	// Name is the host's hostname; default "testhost-N".
	Name string
	// NetNS joins the named network namespace (/run/netns/NAME) instead of
	// creating a fresh one. Network.Start sets it.
	NetNS string
	// TmpfsSize bounds the tmpfs that holds every write made in the host
	// (mount's size= syntax: "512m", "1g"); default "512m".
	TmpfsSize string
	// AptRepo is the directory of a local apt repository (see
	// test/testrepo). When set, it is copied into the host, becomes the
	// host's only apt source and `apt-get update` runs before Start returns.
	AptRepo string
	// Dir is the state directory on the real machine (mount points, console
	// log). Default: a new temporary directory, removed by Stop.
	Dir string
	// Detach keeps the host running after the process that started it exits
	// (for the CLI). Otherwise the host is killed when its starter dies.
	Detach bool
	// NoWait makes Start return as soon as systemd is exec'd, without
	// waiting for WaitReady (or running apt-get update).
	NoWait bool
	// LogLevel is systemd's log level; default "info".
	LogLevel string
	// Logger receives one line per state change; default slog.Default().
	Logger *slog.Logger
	// Loop gives the host's /dev the loop-control node and the block nodes
	// /dev/loop0../dev/loop63, for tests of what loop devices hold (the
	// mount resource's). Loop devices are the kernel's, shared with the
	// machine: the nodes of those attached when the host boots are left
	// out, and a test must detach every device it attaches.
	Loop bool

	addr string // set by Network.Start: the host's address on the bridge
}

// Host is a running test host. Its methods are safe for concurrent use.
type Host struct {
	name    string
	pid     int // host PID of the host's PID 1 (systemd)
	dir     string
	ownDir  bool // dir was made by Start and is removed by Stop
	cg      *cgroup
	netns   string
	addr    string
	logger  *slog.Logger
	started time.Time

	proc   *os.Process   // handle on PID 1 (pidfd based)
	exited chan struct{} // closed when PID 1 (and so its whole pid namespace) is gone
	ready  atomic.Bool

	execSeq atomic.Int64
	mu      sync.Mutex               // guards execs
	execs   map[*execCgroup]struct{} // of commands not yet released

	stopOnce sync.Once
	stopErr  error
	stopDur  time.Duration
	bootDur  time.Duration
}

var hostSeq atomic.Int64

// Start boots a host and, unless opts.NoWait, waits until it is ready. It
// refuses to boot (and returns an error wrapping ErrIsolation) when any
// isolation check fails. The caller must call Stop; StartT does that itself.
func Start(ctx context.Context, opts Options) (h *Host, err error) {
	if miss := Missing(); len(miss) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(miss, "; "))
	}
	seq := hostSeq.Add(1)
	if opts.Name == "" {
		opts.Name = "testhost-" + strconv.FormatInt(seq, 10)
	}
	if opts.TmpfsSize == "" {
		opts.TmpfsSize = "512m"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h = &Host{
		name:    opts.Name,
		netns:   opts.NetNS,
		addr:    opts.addr,
		logger:  opts.Logger.With("host", opts.Name),
		exited:  make(chan struct{}),
		started: time.Now(),
		execs:   map[*execCgroup]struct{}{},
	}
	if err := h.boot(ctx, opts, seq); err != nil {
		return nil, err
	}
	// From here on the host runs: every failure path stops it. (A local
	// copy: "return nil, err" sets the named result h to nil first.)
	host := h
	defer func() {
		if err != nil {
			err = errors.Join(err, host.Stop())
		}
	}()
	if opts.NoWait {
		return h, nil
	}
	if err := h.WaitReady(ctx); err != nil {
		return nil, err
	}
	h.bootDur = time.Since(h.started)
	h.logger.Info("host ready", "pid", h.pid, "boot", h.bootDur.Round(time.Millisecond))
	if opts.AptRepo != "" {
		if _, err := h.Run(ctx, "apt-get", "update", "-q"); err != nil {
			return nil, fmt.Errorf("testhost: apt-get update on the local repository: %w", err)
		}
	}
	return h, nil
}

// boot starts PID 1 running boot.sh, checks the isolation from outside and
// only then lets it exec systemd. On error nothing is left behind.
func (h *Host) boot(ctx context.Context, opts Options, seq int64) (err error) {
	var cleanups []func() error
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				err = errors.Join(err, cleanups[i]())
			}
		}
	}()

	h.dir = opts.Dir
	if h.dir == "" {
		sweepStateDirs()
		d, err := os.MkdirTemp("", fmt.Sprintf("mgmt-testhost-%d-%d-", os.Getpid(), seq))
		if err != nil {
			return fmt.Errorf("testhost: state dir: %w", err)
		}
		h.dir, h.ownDir = d, true
		cleanups = append(cleanups, func() error { return os.RemoveAll(d) })
	}
	for _, d := range []string{"rw", "merged"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			return fmt.Errorf("testhost: state dir: %w", err)
		}
	}
	console, err := os.Create(filepath.Join(h.dir, "console.log"))
	if err != nil {
		return fmt.Errorf("testhost: console log: %w", err)
	}
	console.Close()
	bootLog, err := os.Create(filepath.Join(h.dir, "boot.log"))
	if err != nil {
		return fmt.Errorf("testhost: boot log: %w", err)
	}
	defer bootLog.Close() // the child holds its own copy

	cgName := fmt.Sprintf("%d-%d", os.Getpid(), seq)
	if opts.Detach {
		cgName = "detached-" + opts.Name
	}
	h.cg, err = newCgroup(cgName)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, h.cg.remove)

	hostMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("testhost: own mount namespace: %w", err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("testhost: pipe: %w", err)
	}
	defer ctlW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		return fmt.Errorf("testhost: pipe: %w", err)
	}
	defer stR.Close()

	argv := []string{"/bin/sh", "-c", bootScript, "testhost-boot"}
	clone := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET)
	if opts.NetNS != "" {
		// nsenter joins the named netns and execs the script: no fork, so
		// the script stays PID 1.
		argv = append([]string{"nsenter", "--net=" + netnsPath(opts.NetNS), "--"}, argv...)
		clone &^= unix.CLONE_NEWNET
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"TH_DIR=" + h.dir,
		"TH_TMPFS_SIZE=" + opts.TmpfsSize,
		"TH_HOSTNAME=" + opts.Name,
		"TH_HOST_MNTNS=" + hostMnt,
		"TH_LOGLEVEL=" + opts.LogLevel,
	}
	cmd.Stdout, cmd.Stderr = bootLog, bootLog
	cmd.ExtraFiles = []*os.File{ctlR, stW} // fds 3 and 4
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: clone,
		// Unshared after the clone, in the child: the cgroup namespace
		// then has the host's own cgroup (entered by CLONE_INTO_CGROUP) as
		// its root, and Go makes the new mount namespace's propagation
		// private before the script runs.
		Unshareflags: unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP,
		UseCgroupFD:  true,
		CgroupFD:     h.cg.fd(),
		Setsid:       true,
	}
	if !opts.Detach {
		// The spawner thread never exits, so this fires only when the
		// whole process dies (test timeout, crash): PID 1 is SIGKILLed and
		// the kernel tears its namespaces down.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	err = spawn(cmd)
	ctlR.Close()
	stW.Close()
	if err != nil {
		return fmt.Errorf("testhost: starting PID 1: %w", err)
	}
	h.pid = cmd.Process.Pid
	h.proc = cmd.Process
	waitErr := make(chan error, 1)
	go func() {
		waitErr <- cmd.Wait()
		close(h.exited)
	}()
	cleanups = append(cleanups, func() error {
		h.proc.Kill()
		<-h.exited
		return nil
	})
	h.logger.Debug("PID 1 started", "pid", h.pid, "dir", h.dir, "cgroup", h.cg.path)

	// Wait for "ready" (or "fail ...") from the script.
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stR).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var status string
	select {
	case status = <-line:
	case <-ctx.Done():
		return fmt.Errorf("testhost: waiting for the boot script: %w", ctx.Err())
	}
	h.logger.Debug("boot script ready", "after", time.Since(h.started).Round(time.Millisecond))
	if status != "ready" {
		<-h.exited
		log, _ := os.ReadFile(filepath.Join(h.dir, "boot.log"))
		return fmt.Errorf("%w: boot script: %q; log: %s", ErrIsolation, status, strings.TrimSpace(string(log)))
	}

	if err := h.verify(opts); err != nil {
		io.WriteString(ctlW, "abort\n")
		return err
	}
	if err := h.prepare(opts); err != nil {
		io.WriteString(ctlW, "abort\n")
		return err
	}
	if _, err := io.WriteString(ctlW, "boot\n"); err != nil {
		return fmt.Errorf("testhost: releasing PID 1: %w", err)
	}
	if err := h.writeState(); err != nil {
		return err
	}
	h.logger.Debug("isolation verified, systemd exec'd", "pid", h.pid, "after", time.Since(h.started).Round(time.Millisecond))
	return nil
}

// Name returns the host's hostname.
func (h *Host) Name() string { return h.name }

// PID returns the PID, as the real machine sees it, of the host's PID 1.
func (h *Host) PID() int { return h.pid }

// Dir returns the host's state directory on the real machine.
func (h *Host) Dir() string { return h.dir }

// NetNS returns the named network namespace the host joined, or "".
func (h *Host) NetNS() string { return h.netns }

// Addr returns the host's address on its test bridge, or "" when it has
// none (see Network).
func (h *Host) Addr() string { return h.addr }

// BootDuration is the time from Start to WaitReady's first success.
func (h *Host) BootDuration() time.Duration { return h.bootDur }

// StopDuration is how long Stop waited for PID 1 to exit.
func (h *Host) StopDuration() time.Duration { return h.stopDur }

// Exited is closed once the host's PID 1 has exited.
func (h *Host) Exited() <-chan struct{} { return h.exited }

// Root returns the path on the real machine through which the host's root
// directory is seen (/proc/PID/root). Do not write through it: use
// CopyIn or WriteFile, which resolve symbolic links inside the host.
func (h *Host) Root() string { return fmt.Sprintf("/proc/%d/root", h.pid) }

// SystemBusAddress is the D-Bus address of the host's system bus, usable
// from the real machine (godbus, go-systemd, busctl --address).
func (h *Host) SystemBusAddress() string {
	return "unix:path=" + h.Root() + "/run/dbus/system_bus_socket"
}

func (h *Host) running() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Stop halts the host (SIGRTMIN+3 to its PID 1), kills it if it has not
// exited after a while, then removes its cgroup and state directory. It is
// idempotent and safe to call on any path.
func (h *Host) Stop() error {
	h.stopOnce.Do(func() { h.stopErr = h.stop() })
	return h.stopErr
}

const (
	haltTimeout = 10 * time.Second
	killTimeout = 10 * time.Second
)

func (h *Host) stop() error {
	var errs []error
	t0 := time.Now()
	// Commands run from outside first: their nsenter, outside the host's
	// pid namespace, would otherwise stop itself when systemd's shutdown
	// SIGSTOPs their command, and never reap it.
	h.mu.Lock()
	execs := make([]*execCgroup, 0, len(h.execs))
	for e := range h.execs {
		execs = append(execs, e)
	}
	h.mu.Unlock()
	for _, e := range execs {
		e.kill()
	}
	for _, e := range execs {
		e.release()
	}
	if h.running() {
		if err := h.proc.Signal(sigHalt); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("testhost: halting %s: %w", h.name, err))
		}
		select {
		case <-h.exited:
		case <-time.After(haltTimeout):
			// SIGKILL to everything in the host's cgroup, PID 1 included.
			h.logger.Warn("halt timed out, killing the host", "pid", h.pid)
			if err := h.cg.kill(); err != nil {
				h.proc.Kill()
			}
			select {
			case <-h.exited:
			case <-time.After(killTimeout):
				errs = append(errs, fmt.Errorf("testhost: PID 1 %d of %s did not exit", h.pid, h.name))
			}
		}
	}
	h.stopDur = time.Since(t0)
	if err := h.cg.remove(); err != nil {
		errs = append(errs, err)
	}
	if h.ownDir {
		if err := os.RemoveAll(h.dir); err != nil {
			errs = append(errs, fmt.Errorf("testhost: removing state dir: %w", err))
		}
	}
	h.logger.Info("host stopped", "stop", h.stopDur.Round(time.Millisecond))
	return errors.Join(errs...)
}

var staleStateDir = regexp.MustCompile(`^mgmt-testhost-([0-9]+)-[0-9]+-[0-9]+$`)

// sweepStateDirs removes the state directories of hosts whose process died
// without stopping them (a test binary killed at its timeout): the kernel
// killed those hosts and their mounts with them, so what is left are plain
// files and empty mount points.
func sweepStateDirs() {
	ents, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		m := staleStateDir.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
	}
}

// spawner starts processes from one OS thread that never exits: Linux
// sends a child's parent-death signal when the thread that forked it ends,
// and Go retires threads.
var spawner = sync.OnceValue(func() chan spawnReq {
	ch := make(chan spawnReq)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for r := range ch {
			r.done <- r.cmd.Start()
		}
	}()
	return ch
})

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawner() <- r
	return <-r.done
}
