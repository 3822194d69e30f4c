package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
)

// basePath is the PATH every measured command gets, here and in hosts.
const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// result is one finished command.
type result struct {
	argv    []string
	elapsed time.Duration
	code    int    // exit status; -1 when killed by a signal
	maxRSS  int64  // peak resident set, KiB (getrusage's ru_maxrss)
	out     []byte // stdout and stderr, interleaved
}

// ok returns an error unless the command exited with one of codes (0 when
// none are given), naming the command and ending with its last output.
func (r result) ok(codes ...int) error {
	if len(codes) == 0 {
		codes = []int{0}
	}
	if slices.Contains(codes, r.code) {
		return nil
	}
	return &cmdError{Argv: r.argv, Code: r.code, Tail: tail(r.out, 600)}
}

// cmdError is a measured command that failed.
type cmdError struct {
	Argv []string
	Code int
	Tail string
}

func (e *cmdError) Error() string {
	return fmt.Sprintf("%s: exit status %d: %s", strings.Join(e.Argv, " "), e.Code, e.Tail)
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return strings.Join(strings.Fields(s), " ")
}

// target runs commands and times them: on this machine, or inside a test
// host.
type target interface {
	run(ctx context.Context, env []string, argv ...string) (result, error)
	String() string
}

// local runs commands on this machine with a fixed environment: env is
// added to base.
type local struct {
	base []string
}

func (l local) String() string { return "this machine" }

func (l local) run(ctx context.Context, env []string, argv ...string) (result, error) {
	return timeCommand(ctx, append(slices.Clone(l.base), env...), argv)
}

// timeCommand runs argv with the given environment and measures its wall
// time and peak memory. Only a failure to start is an error; the exit
// status is in the result.
func timeCommand(ctx context.Context, env, argv []string) (result, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{argv: argv, elapsed: time.Since(start), out: out.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("%s: %w", strings.Join(argv, " "), ctx.Err())
	}
	return r, nil
}

// inHost runs commands inside a test host through this program's own
// timeit subcommand, installed in the host, so that the time measured is
// the command's alone (not nsenter's, nor the cgroup set-up around it).
type inHost struct {
	h      *testhost.Host
	helper string // the path of this program inside the host
}

func (t inHost) String() string { return "test host " + t.h.Name() }

func (t inHost) run(ctx context.Context, env []string, argv ...string) (result, error) {
	return runTimeit(ctx, t, func(args []string) *exec.Cmd { return t.h.Command(ctx, args...) }, t.helper, env, argv)
}

// viaTimeit runs commands on this machine through the timeit subcommand
// of a fresh copy of this program. Memory is measured that way: a child
// started straight from this (large) process inherits its peak resident
// set in ru_maxrss, since Linux keeps the larger of the two across exec.
type viaTimeit struct {
	base   []string
	helper string // this program
}

func (t viaTimeit) String() string { return "this machine, through timeit" }

func (t viaTimeit) run(ctx context.Context, env []string, argv ...string) (result, error) {
	return runTimeit(ctx, t, func(args []string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = t.base
		return cmd
	}, t.helper, env, argv)
}

// runTimeit runs `helper timeit [-env K=V]... -- argv` with the command
// mk makes, and returns what timeit measured.
func runTimeit(ctx context.Context, t target, mk func(args []string) *exec.Cmd, helper string, env, argv []string) (result, error) {
	args := []string{helper, "timeit"}
	for _, e := range env {
		args = append(args, "-env", e)
	}
	args = append(append(args, "--"), argv...)
	cmd := mk(args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{argv: argv}, fmt.Errorf("%s: %s: %w: %s", t, strings.Join(argv, " "), err, tail(stderr.Bytes(), 600))
	}
	var tr timeitResult
	if err := json.Unmarshal(stdout.Bytes(), &tr); err != nil {
		return result{argv: argv}, fmt.Errorf("%s: timeit output %q: %w", t, tail(stdout.Bytes(), 200), err)
	}
	if tr.Error != "" {
		return result{argv: argv}, fmt.Errorf("%s: %s", t, tr.Error)
	}
	return result{argv: argv, elapsed: time.Duration(tr.Nanos), code: tr.Code, maxRSS: tr.MaxRSS, out: stderr.Bytes()}, nil
}

// timeitResult is what the timeit subcommand prints.
type timeitResult struct {
	Nanos  int64  `json:"ns"`
	Code   int    `json:"code"`
	MaxRSS int64  `json:"maxrss_kib"`
	Error  string `json:"error,omitempty"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// timeit is the subcommand run inside hosts: `compare timeit [-env K=V]...
// -- ARGV`. It runs ARGV with the host's environment plus the given
// variables, passes its output to stderr and prints a timeitResult on
// stdout.
func timeit(args []string) int {
	fs := flag.NewFlagSet("timeit", flag.ContinueOnError)
	var env multiFlag
	fs.Var(&env, "env", "K=V added to the environment (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "timeit: no command")
		return 2
	}
	r, err := timeCommand(context.Background(), append(os.Environ(), env...), argv)
	os.Stderr.Write(r.out)
	tr := timeitResult{Nanos: r.elapsed.Nanoseconds(), Code: r.code, MaxRSS: r.maxRSS}
	if err != nil {
		tr.Error = err.Error()
	}
	b, _ := json.Marshal(tr)
	fmt.Println(string(b))
	return 0
}
