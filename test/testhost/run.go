package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hostEnv is the environment commands run with inside a host.
var hostEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"HOME=/root",
	"TERM=dumb",
	"DEBIAN_FRONTEND=noninteractive",
	"container=mgmt-testhost",
}

// RunError is returned by Run when the command fails; it carries what the
// command wrote on stderr.
type RunError struct {
	Host   string
	Argv   []string
	Stderr []byte
	Err    error
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("testhost: %s: %s: %v", e.Host, strings.Join(e.Argv, " "), e.Err)
	if s := strings.TrimSpace(string(e.Stderr)); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *RunError) Unwrap() error { return e.Err }

// Command returns a command that runs argv inside the host: nsenter into all
// its namespaces and its root, with a small fixed environment (append to Env
// to add to it). It runs in a cgroup of its own below the host's; when ctx
// ends, every process in that cgroup is killed, inside the host too.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	cmd, _ := h.command(ctx, argv) // its cgroup is released by Stop
	return cmd
}

func (h *Host) command(ctx context.Context, argv []string) (*exec.Cmd, *execCgroup) {
	args := []string{"-t", strconv.Itoa(h.pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--"}
	cmd := exec.CommandContext(ctx, "nsenter", append(args, argv...)...)
	cmd.Env = append([]string(nil), hostEnv...)
	cmd.WaitDelay = 5 * time.Second
	ecg, err := h.newExecCgroup()
	if err != nil {
		// Start fails on the nsenter of a host that is gone; say why.
		h.logger.Debug("no cgroup for command", "err", err)
		return cmd, nil
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(ecg.dir.Fd())}
	// nsenter forks the command into the host's pid namespace and does not
	// pass signals on: kill the whole cgroup, nsenter and command alike.
	cmd.Cancel = func() error {
		if err := ecg.kill(); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	return cmd, ecg
}

// Run runs argv inside the host and returns its standard output. A failure
// is a *RunError carrying its standard error. Processes the command leaves
// behind in its cgroup are killed when it exits (systemd units it starts
// live in the host's own cgroups and are not affected).
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	if !h.running() {
		return nil, ErrNotRunning
	}
	cmd, ecg := h.command(ctx, argv)
	defer ecg.release()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return stdout.Bytes(), &RunError{Host: h.name, Argv: argv, Stderr: stderr.Bytes(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Proc is a command running in the background inside a host (see Spawn).
type Proc struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	err   error // set before done is closed
	inner int   // real-machine PID of the command inside (nsenter's child)
}

// Spawn starts argv in the background inside the host, with its standard
// output and error collected (Output). Stop it with Stop; it also dies with
// ctx, and with the host.
func (h *Host) Spawn(ctx context.Context, argv ...string) (*Proc, error) {
	if !h.running() {
		return nil, ErrNotRunning
	}
	p := &Proc{out: &syncBuffer{}, done: make(chan struct{})}
	var ecg *execCgroup
	p.cmd, ecg = h.command(ctx, argv)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		ecg.release()
		return nil, fmt.Errorf("testhost: %s: starting %s: %w", h.name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		ecg.release()
		close(p.done)
	}()
	// nsenter forks the command into the host's pid namespace; find it.
	children := fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid)
	for p.inner == 0 {
		if b, err := os.ReadFile(children); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				p.inner, _ = strconv.Atoi(f[0])
				break
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("testhost: %s: %s exited at once: %w: %s", h.name, strings.Join(argv, " "), p.err, p.out.String())
		case <-time.After(time.Millisecond):
		}
	}
	return p, nil
}

// PID returns the real machine's PID of the command inside the host.
func (p *Proc) PID() int { return p.inner }

// Done is closed when the command has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the command to exit and returns its error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Output returns what the command has written so far.
func (p *Proc) Output() string { return p.out.String() }

// Stop sends SIGTERM to the command, waits up to timeout for it to exit,
// then kills it and all it started. It returns the command's exit error, nil if it was
// stopped by the signal.
func (p *Proc) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	// A pidfd makes sure the signal reaches our command, not a reused PID.
	if fd, err := unix.PidfdOpen(p.inner, 0); err == nil {
		unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
		unix.Close(fd)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Cancel()
		<-p.done
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.err
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// GoBuild builds a Go main package (an import path or a ./relative path,
// resolved from the test's working directory) into a temporary directory
// and returns the binary's path, to be installed in hosts with
// InstallBinary: e.g. GoBuild(t, "github.com/mgmtconfig/mgmt").
func GoBuild(tb testing.TB, pkg string) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testhost: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// MgmtPackage is the import path of the mgmt command.
const MgmtPackage = "github.com/mgmtconfig/mgmt/cmd/mgmt"

// MgmtBinaryEnv names a built mgmt for InstallMgmt to install instead of
// building one, e.g. the ./mgmt of make build (with the mgmt_split_server
// tag, which a plain go build lacks).
const MgmtBinaryEnv = "MGMT_TEST_MGMT_BINARY"

// InstallMgmt builds the mgmt command (GoBuild), or takes $MGMT_TEST_MGMT_BINARY,
// and installs it in every given host as /usr/local/bin/mgmt, the path it
// returns; start it with Spawn, e.g. h.Spawn(ctx, path, "run", "--file",
// "/root/graph.yaml").
func InstallMgmt(tb testing.TB, hosts ...*Host) string {
	tb.Helper()
	bin := os.Getenv(MgmtBinaryEnv)
	if bin == "" {
		bin = GoBuild(tb, MgmtPackage)
	}
	var path string
	for _, h := range hosts {
		p, err := h.InstallBinary(bin, "mgmt")
		if err != nil {
			tb.Fatal(err)
		}
		path = p
	}
	return path
}
