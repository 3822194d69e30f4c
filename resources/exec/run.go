package exec

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/quote"

	"golang.org/x/sys/unix"
)

// ErrTimeout is wrapped by the error of a command killed because its
// timeout expired.
var ErrTimeout = errors.New("timeout expired")

// Limits of what is kept of a command's output.
const (
	maxLineBytes  = 4096 // longer lines are cut (and marked) when read
	stderrTail    = 5    // stderr lines kept for an ExitError
	maxTailBytes  = 512  // each of them cut to this in the error
	truncatedMark = " [...]"
)

// How long a stopped command gets, and how long its output may stay open.
var (
	killGrace = 500 * time.Millisecond // between SIGTERM and SIGKILL
	pipeGrace = time.Second            // for output still open after the group is gone
)

// ExitError is a command that ran and did not exit with status 0.
type ExitError struct {
	Cmd    string         // the command as the user wrote it
	Status int            // exit status; -1 when killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
	Stderr []string       // the last lines it wrote to stderr
}

func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Signal != 0 {
		fmt.Fprintf(&b, "%s was killed by signal %d (%v)", quote.String(e.Cmd), int(e.Signal), e.Signal)
	} else {
		fmt.Fprintf(&b, "%s exited with status %d", quote.String(e.Cmd), e.Status)
	}
	if len(e.Stderr) > 0 {
		b.WriteString("; stderr ends: ")
		for i, l := range e.Stderr {
			if i > 0 {
				b.WriteString(" | ")
			}
			if len(l) > maxTailBytes {
				l = l[:maxTailBytes] + truncatedMark
			}
			b.WriteString(l)
		}
	}
	return b.String()
}

// Stream names which output a line came from.
type stream string

const (
	stdout stream = "stdout"
	stderr stream = "stderr"
)

// proc is one command to run.
type proc struct {
	name    string   // the command as the user wrote it, for errors
	argv    []string // argv[0] is looked up in PATH when it has no slash
	dir     string
	env     []string // nil: the agent's environment
	cred    *syscall.Credential
	timeout time.Duration // 0: none
	log     *slog.Logger  // for what goes wrong around the command
}

// run starts p in a process group of its own and waits until it exits, its
// timeout expires or ctx ends; in the last two cases the whole group gets
// SIGTERM, then SIGKILL after killGrace. When the command exits, whatever it
// left running in its group is killed too, so nothing outlives a run.
//
// started, if not nil, is called once the process exists. line is called
// for every line of output (cut at maxLineBytes), one call at a time.
// A zero exit returns nil; any other exit an *ExitError, wrapped with
// ErrTimeout or the ctx's error when that is why it ended.
func (p proc) run(ctx context.Context, started func(), line func(stream, string)) error {
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, p.timeout, ErrTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s not started: %w", quote.String(p.name), context.Cause(ctx))
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	cmd := osexec.Command(p.argv[0], p.argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return fmt.Errorf("%s: %w", quote.String(p.name), err)
	}
	pid := cmd.Process.Pid
	if started != nil {
		started()
	}

	var (
		mu   sync.Mutex // guards tail, and serialises line
		tail []string
	)
	var readers sync.WaitGroup
	read := func(r io.Reader, s stream) {
		defer readers.Done()
		readLines(r, func(text string) {
			mu.Lock()
			defer mu.Unlock()
			if s == stderr {
				if len(tail) == stderrTail {
					tail = append(tail[:0], tail[1:]...)
				}
				tail = append(tail, text)
			}
			if line != nil {
				line(s, text)
			}
		})
	}
	readers.Add(2)
	go read(outR, stdout)
	go read(errR, stderr)

	exited := make(chan struct{})
	go func() {
		defer close(exited)
		waitExited(pid)
	}()
	var stopped error
	select {
	case <-exited:
	case <-ctx.Done():
		stopped = context.Cause(ctx)
		killGroup(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(killGrace):
			killGroup(pid, syscall.SIGKILL)
			<-exited
		}
	}
	// The leader is a zombie, not yet reaped, so its pid still names this
	// group and nothing else: kill whatever the command left behind.
	killGroup(pid, syscall.SIGKILL)

	// Output ends when the group is gone, unless something that left the
	// group (setsid) still holds it open: then stop reading.
	readDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readDone)
	}()
	select {
	case <-readDone:
	case <-time.After(pipeGrace):
		p.log.Warn("output still open after the command's process group ended: something it started left the group and still runs", "cmd", quote.String(p.name), "pid", pid)
		outR.Close()
		errR.Close()
		<-readDone
	}
	outR.Close()
	errR.Close()

	waitErr := cmd.Wait()
	mu.Lock()
	exitErr := &ExitError{Cmd: p.name, Stderr: tail}
	mu.Unlock()
	var ee *osexec.ExitError
	switch {
	case waitErr == nil:
		exitErr = nil
	case errors.As(waitErr, &ee):
		exitErr.Status = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exitErr.Signal = ws.Signal()
		}
	default:
		return fmt.Errorf("%s: %w", quote.String(p.name), waitErr)
	}
	switch {
	case stopped == nil && exitErr == nil:
		return nil
	case stopped == nil:
		return exitErr
	case errors.Is(stopped, ErrTimeout):
		return fmt.Errorf("%w after %v: %w", ErrTimeout, p.timeout, exitErrOrStatus(exitErr, p.name))
	default:
		return fmt.Errorf("stopped: %w: %w", stopped, exitErrOrStatus(exitErr, p.name))
	}
}

// exitErrOrStatus is e, or an ExitError for status 0 when the command
// managed to exit cleanly while being stopped.
func exitErrOrStatus(e *ExitError, name string) *ExitError {
	if e == nil {
		return &ExitError{Cmd: name}
	}
	return e
}

// waitExited blocks until the process pid has exited, without reaping it.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// killGroup signals the process group led by pid; a group already gone is
// not an error.
func killGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

// readLines calls fn with each line read from r, without its line ending.
// A line longer than maxLineBytes is cut there and marked; the rest of it
// is skipped. It returns at EOF or at the first read error.
func readLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	skipping := false
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping {
				fn(string(b) + truncatedMark)
				skipping = true
			}
			continue
		}
		if len(b) > 0 && !skipping {
			b = b[:len(b)-len(trailingNewline(b))]
			fn(string(b))
		}
		skipping = false
		if err != nil {
			return
		}
	}
}

func trailingNewline(b []byte) []byte {
	switch {
	case len(b) >= 2 && b[len(b)-2] == '\r' && b[len(b)-1] == '\n':
		return b[len(b)-2:]
	case len(b) >= 1 && b[len(b)-1] == '\n':
		return b[len(b)-1:]
	}
	return nil
}
