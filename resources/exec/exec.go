package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/quote"
)

func init() {
	engine.Register("exec", func() engine.Res { return &Exec{} })
}

// ErrWatchExited is wrapped by Watch's error when watchcmd ends by itself.
var ErrWatchExited = errors.New("watchcmd exited")

// Bounds of the durations, in seconds: at least a millisecond, and far from
// overflowing a time.Duration (1e9 s is about 31 years).
const (
	minSeconds = 0.001
	maxSeconds = 1e9
)

// maxLoggedLines is how many output lines of one run are logged; the rest
// are counted.
const maxLoggedLines = 100

// Exec runs Cmd. It has no state on disk to compare: a check that may act
// runs the command (unless Creates exists or IfCmd fails), so it runs once
// at start, then again each time its vertex is dirtied (a WatchCmd line, a
// PollInt tick) or a parent changes. The empty string and 0 mean unset.
type Exec struct {
	Cmd        string            `yaml:"cmd"`        // the command: split into argv, or given to Shell
	Shell      string            `yaml:"shell"`      // run Cmd as: Shell -c Cmd (e.g. /bin/sh)
	Cwd        string            `yaml:"cwd"`        // absolute working directory
	Env        map[string]string `yaml:"env"`        // added to (or overriding) the agent's environment
	Timeout    float64           `yaml:"timeout"`    // seconds Cmd or IfCmd may run before their group is killed
	IfCmd      string            `yaml:"ifcmd"`      // run Cmd only when this exits 0
	IfShell    string            `yaml:"ifshell"`    // run IfCmd as: IfShell -c IfCmd
	Creates    string            `yaml:"creates"`    // absolute path: run Cmd only while it does not exist
	WatchCmd   string            `yaml:"watchcmd"`   // long-running; every stdout line is an event
	WatchShell string            `yaml:"watchshell"` // run WatchCmd as: WatchShell -c WatchCmd
	PollInt    float64           `yaml:"pollint"`    // seconds between events, besides WatchCmd's
	State      string            `yaml:"state"`      // "present" (legacy) or empty
	User       string            `yaml:"user"`       // run the commands as this user (name or uid)
	Group      string            `yaml:"group"`      // and group (name or gid); default: the user's

	log *slog.Logger
	// ranLast: the latest CheckApply ran Cmd, so a Refresh right after it
	// has nothing more to do.
	ranLast atomic.Bool
}

// Init takes the resource's logger.
func (x *Exec) Init(env engine.Env) error {
	x.log = env.Logger
	return nil
}

func (x *Exec) logger() *slog.Logger {
	if x.log == nil {
		return slog.Default()
	}
	return x.log
}

// Validate checks every parameter and returns all problems found, each
// naming the field and what would be valid.
func (x *Exec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if x.Cmd == "" {
		bad("cmd", "missing: want the command to run, e.g. cmd: sleep 10s")
	}
	checkCmd := func(field, cmd, shellField, shell string) {
		if cmd == "" {
			return
		}
		if shell != "" {
			if strings.IndexByte(cmd, 0) >= 0 {
				bad(field, "contains a NUL byte")
			}
			if _, err := shellArgv(shell, cmd); err != nil {
				bad(shellField, "%v", err)
			}
			return
		}
		if _, err := cmdArgv(cmd); err != nil {
			bad(field, "%v", err)
		}
	}
	checkCmd("cmd", x.Cmd, "shell", x.Shell)
	checkCmd("ifcmd", x.IfCmd, "ifshell", x.IfShell)
	checkCmd("watchcmd", x.WatchCmd, "watchshell", x.WatchShell)
	if x.IfShell != "" && x.IfCmd == "" {
		bad("ifshell", "set without ifcmd: set ifcmd too, or remove ifshell")
	}
	if x.WatchShell != "" && x.WatchCmd == "" {
		bad("watchshell", "set without watchcmd: set watchcmd too, or remove watchshell")
	}
	for _, f := range []struct {
		field string
		v     float64
	}{{"timeout", x.Timeout}, {"pollint", x.PollInt}} {
		if f.v != 0 && (math.IsNaN(f.v) || f.v < minSeconds || f.v > maxSeconds) {
			bad(f.field, "%v is invalid: want seconds from %g to %g, or 0 for none", f.v, minSeconds, float64(maxSeconds))
		}
	}
	for _, f := range []struct{ field, path string }{{"cwd", x.Cwd}, {"creates", x.Creates}} {
		if f.path != "" && (!filepath.IsAbs(f.path) || strings.IndexByte(f.path, 0) >= 0) {
			bad(f.field, "%s is invalid: want an absolute path", quote.String(f.path))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(x.Env)) {
		if v := x.Env[k]; k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			bad("env", "%s is invalid: want a name without '=' or NUL, and a value without NUL", quote.String(k))
		}
	}
	switch x.State {
	case "", "present":
	default:
		bad("state", "%s is invalid: want present or nothing (exec has no state on disk)", quote.String(x.State))
	}
	if _, _, err := credential(x.User, x.Group); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// maxArgLen is Linux's MAX_ARG_STRLEN: execve refuses (E2BIG) any one
// argument longer, so a longer command can never run, through a shell
// (where it is one argument) or not (where a word of it would be).
const maxArgLen = 32 * 4096

// cmdArgv splits a command run without a shell.
func cmdArgv(cmd string) ([]string, error) {
	if len(cmd) > maxArgLen {
		return nil, fmt.Errorf("%d bytes long: want at most %d (the kernel's MAX_ARG_STRLEN); write a script and run it", len(cmd), maxArgLen)
	}
	argv, err := SplitArgs(cmd)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("blank: want the command to run")
	}
	if err := checkProgram(argv[0], "the command to run, e.g. cmd: sleep 10s"); err != nil {
		return nil, err
	}
	return argv, nil
}

// checkProgram refuses a program name that names nothing a person could
// see: empty (” or ""), only blanks (' ', \ ), or holding an invisible
// character. execve would fail on the empty one at run time, and look up
// the others on PATH as names no one can read in the graph.
func checkProgram(prog, want string) error {
	if strings.TrimFunc(prog, unicode.IsSpace) == "" {
		return fmt.Errorf("the program to run is %s, empty once its quotes are removed: want %s", quote.String(prog), want)
	}
	if i, r := quote.Find(prog); i >= 0 {
		return fmt.Errorf("the program to run, %s, holds %U, an invisible character: want a visible program name", quote.String(prog), r)
	}
	return nil
}

// shellArgv is the argv that runs cmd through shell, which may carry its
// own options ("/bin/bash -e").
func shellArgv(shell, cmd string) ([]string, error) {
	if len(cmd) > maxArgLen {
		return nil, fmt.Errorf("the command is %d bytes long: want at most %d (the kernel's MAX_ARG_STRLEN); write a script and run it", len(cmd), maxArgLen)
	}
	argv, err := SplitArgs(shell)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("blank: want a shell such as /bin/sh")
	}
	if err := checkProgram(argv[0], "a shell such as /bin/sh"); err != nil {
		return nil, err
	}
	return append(argv, "-c", cmd), nil
}

// proc builds the process for cmd, run directly or through shell.
func (x *Exec) proc(cmd, shell string, timeout float64) (proc, error) {
	var (
		argv []string
		err  error
	)
	if shell != "" {
		argv, err = shellArgv(shell, cmd)
	} else {
		argv, err = cmdArgv(cmd)
	}
	if err != nil {
		return proc{}, err
	}
	cred, credEnv, err := credential(x.User, x.Group)
	if err != nil {
		return proc{}, err
	}
	p := proc{name: cmd, argv: argv, dir: x.Cwd, cred: cred, timeout: seconds(timeout), log: x.logger()}
	if len(credEnv) > 0 || len(x.Env) > 0 {
		p.env = append(os.Environ(), credEnv...)
		for k, v := range x.Env {
			p.env = append(p.env, k+"="+v) // later entries win
		}
	}
	return p, nil
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

// CheckApply runs Cmd unless Creates exists or IfCmd exits non-zero. With
// apply false it runs nothing: it reports whether Cmd would run, judging by
// Creates alone (IfCmd is a command, and might change something).
func (x *Exec) CheckApply(ctx context.Context, apply bool) (bool, error) {
	x.ranLast.Store(false)
	ran, err := x.apply(ctx, apply)
	if err != nil || !ran || !apply {
		return ran, err
	}
	x.ranLast.Store(true)
	return true, nil
}

// Refresh runs Cmd again for a notify edge, with the same conditions as
// CheckApply, unless the CheckApply just before already ran it.
func (x *Exec) Refresh(ctx context.Context) (bool, error) {
	if x.ranLast.Swap(false) {
		return false, nil
	}
	return x.apply(ctx, true)
}

// apply is one possible run of Cmd; ran reports that it ran (or would have).
func (x *Exec) apply(ctx context.Context, apply bool) (ran bool, err error) {
	log := x.logger()
	if x.Creates != "" {
		_, err := os.Lstat(x.Creates)
		switch {
		case err == nil:
			log.Debug("not running: creates exists", "creates", x.Creates)
			return false, nil
		case !errors.Is(err, fs.ErrNotExist):
			return false, fmt.Errorf("creates: %w", err)
		}
	}
	c := engine.Change{Property: "cmd", To: x.Cmd, Why: "no ifcmd or creates: runs at every check"}
	if x.Creates != "" {
		c.Why = "creates " + x.Creates + " is missing"
	}
	if !apply {
		if x.IfCmd != "" {
			// Running ifcmd might change something: noop does not.
			c.Why += "; ifcmd " + x.IfCmd + " decides (not run in noop)"
			if x.Creates == "" {
				c.Why = "ifcmd " + x.IfCmd + " decides (not run in noop)"
			}
		}
		engine.Changed(ctx, c)
		return true, nil
	}
	if x.IfCmd != "" {
		ok, err := x.ifCmd(ctx)
		if err != nil || !ok {
			return false, err
		}
		if x.Creates != "" {
			c.Why += "; ifcmd exited 0"
		} else {
			c.Why = "ifcmd exited 0"
		}
	}
	engine.Changed(ctx, c)
	p, err := x.proc(x.Cmd, x.Shell, x.Timeout)
	if err != nil {
		return false, fmt.Errorf("cmd: %w", err)
	}
	start := time.Now()
	out := newOutputLog(log, slog.LevelInfo)
	err = p.run(ctx, nil, out.line)
	out.done()
	if err != nil {
		return false, fmt.Errorf("cmd: %w", err)
	}
	log.Debug("ran", "cmd", x.Cmd, "duration", time.Since(start).Round(time.Millisecond))
	return true, nil
}

// ifCmd runs IfCmd: ok is true when it exited 0, false when it exited with
// another status; anything else (not started, killed, timed out) is an error.
func (x *Exec) ifCmd(ctx context.Context) (ok bool, err error) {
	p, err := x.proc(x.IfCmd, x.IfShell, x.Timeout)
	if err != nil {
		return false, fmt.Errorf("ifcmd: %w", err)
	}
	out := newOutputLog(x.logger(), slog.LevelDebug)
	err = p.run(ctx, nil, out.line)
	out.done()
	var ee *ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.Signal == 0 && !errors.Is(err, ErrTimeout) && ctx.Err() == nil:
		x.logger().Debug("not running: ifcmd failed", "ifcmd", x.IfCmd, "status", ee.Status)
		return false, nil
	default:
		return false, fmt.Errorf("ifcmd: %w", err)
	}
}

// Watch marks the vertex dirty for every line WatchCmd writes to stdout
// (its stderr is logged) and every PollInt seconds. Without either it just
// reports itself running. It returns nil when ctx ends, and an error when
// WatchCmd cannot start or exits by itself.
func (x *Exec) Watch(ctx context.Context, ev engine.Events) error {
	if x.WatchCmd == "" {
		ev.Running()
		if x.PollInt > 0 {
			x.poll(ctx, ev)
		} else {
			<-ctx.Done()
		}
		return nil
	}
	p, err := x.proc(x.WatchCmd, x.WatchShell, 0)
	if err != nil {
		return fmt.Errorf("watchcmd: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var polling sync.WaitGroup
	started := func() {
		ev.Running()
		if x.PollInt > 0 {
			polling.Go(func() { x.poll(wctx, ev) })
		}
	}
	log := x.logger()
	line := func(s stream, text string) {
		if s == stdout {
			log.Debug("watchcmd event", "line", text)
			ev.Dirty()
			return
		}
		log.Info("watchcmd output", "stream", string(s), "line", text)
	}
	err = p.run(wctx, started, line)
	cancel()
	polling.Wait()
	var ee *ExitError
	switch {
	case ctx.Err() != nil:
		return nil // the way a watch is meant to end
	case err == nil:
		return fmt.Errorf("%w with status 0", ErrWatchExited)
	case errors.As(err, &ee):
		return fmt.Errorf("%w: %w", ErrWatchExited, err)
	default:
		return fmt.Errorf("watchcmd: %w", err)
	}
}

// poll marks the vertex dirty every PollInt seconds until ctx ends.
func (x *Exec) poll(ctx context.Context, ev engine.Events) {
	t := time.NewTicker(seconds(x.PollInt))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ev.Dirty()
		}
	}
}

// Close has nothing to release: every process ends with the call that
// started it.
func (x *Exec) Close() error { return nil }

// outputLog logs the first maxLoggedLines lines of one run's output and
// counts the rest. Its line method is called one line at a time.
type outputLog struct {
	log   *slog.Logger
	level slog.Level
	lines int
}

func newOutputLog(log *slog.Logger, level slog.Level) *outputLog {
	return &outputLog{log: log, level: level}
}

func (o *outputLog) line(s stream, text string) {
	o.lines++
	if o.lines <= maxLoggedLines {
		o.log.Log(context.Background(), o.level, "output", "stream", string(s), "line", text)
	}
}

func (o *outputLog) done() {
	if o.lines > maxLoggedLines {
		o.log.Log(context.Background(), o.level, "output cut", "lines", o.lines, "not_logged", o.lines-maxLoggedLines)
	}
}
