package exec

import (
	"context"
	"errors"
	"io/fs"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
	"github.com/mgmtconfig/mgmt/test/wait"
)

func TestRunLogsOutput(t *testing.T) {
	leakCheck(t)
	x, rec := newExec(t, &Exec{Cmd: `printf 'one\ntwo\nno newline'`})
	changed, err := x.CheckApply(context.Background(), true)
	if !changed || err != nil {
		t.Fatalf("CheckApply = %v, %v; want true, nil", changed, err)
	}
	if got, want := rec.output(stdout), []string{"one", "two", "no newline"}; !slices.Equal(got, want) {
		t.Fatalf("logged stdout %q, want %q", got, want)
	}
	if ran := rec.records("ran"); len(ran) != 1 || ran[0]["cmd"] != x.Cmd {
		t.Fatalf("ran records: %v", ran)
	}
}

func TestRunArgvWithoutShell(t *testing.T) {
	leakCheck(t)
	// printf receives its arguments verbatim: no expansion, no splitting
	// inside quotes.
	x, rec := newExec(t, &Exec{Cmd: `printf '%s|\n' 'a b' "c'd" e\ f '*' '$HOME'`})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.output(stdout), []string{"a b|", "c'd|", "e f|", "*|", "$HOME|"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRunShell(t *testing.T) {
	leakCheck(t)
	x, rec := newExec(t, &Exec{Cmd: `echo "$((6*7))" | tr 4 X`, Shell: "/bin/sh"})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got := rec.output(stdout); !slices.Equal(got, []string{"X2"}) {
		t.Fatalf("got %q", got)
	}
}

func TestExitStatusError(t *testing.T) {
	leakCheck(t)
	x, rec := newExec(t, &Exec{Shell: "/bin/sh", Cmd: `for i in 1 2 3 4 5 6 7; do echo "err $i" >&2; done; echo out; exit 3`})
	changed, err := x.CheckApply(context.Background(), true)
	if changed {
		t.Error("a failed command reported a change")
	}
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want an *ExitError", err)
	}
	if ee.Status != 3 || ee.Signal != 0 {
		t.Errorf("status %d signal %v, want 3 and none", ee.Status, ee.Signal)
	}
	if want := []string{"err 3", "err 4", "err 5", "err 6", "err 7"}; !slices.Equal(ee.Stderr, want) {
		t.Errorf("stderr tail %q, want %q", ee.Stderr, want)
	}
	// The command is shortened: the error is logged, and a command can be
	// 128 KiB long.
	want := `cmd: "for i in 1 2 3 4 5 6 7; do echo \"err $i\" >&2; done; echo ..." exited with status 3; stderr ends: err 3 | err 4 | err 5 | err 6 | err 7`
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}
	if got := rec.output(stderr); len(got) != 7 {
		t.Errorf("logged %d stderr lines, want 7", len(got))
	}
}

func TestStartFailure(t *testing.T) {
	leakCheck(t)
	x, _ := newExec(t, &Exec{Cmd: "/nonexistent/mgmt-test-program"})
	if _, err := x.CheckApply(context.Background(), true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want one wrapping fs.ErrNotExist", err)
	}
	x, _ = newExec(t, &Exec{Cmd: "mgmt-test-no-such-program-in-path"})
	if _, err := x.CheckApply(context.Background(), true); !errors.Is(err, osexec.ErrNotFound) {
		t.Fatalf("err = %v, want one wrapping exec.ErrNotFound", err)
	}
}

// A command that outlives its timeout is stopped with its whole process
// group: SIGTERM, then SIGKILL for what ignores SIGTERM.
func TestTimeoutKillsGroup(t *testing.T) {
	leakCheck(t)
	tests := []struct {
		name, cmd  string
		wantSignal syscall.Signal
	}{
		{"a child ignores SIGTERM", `sh -c 'trap "" TERM; sleep 300 & wait' & echo $! > PIDFILE; sleep 300`, syscall.SIGTERM},
		{"everything ignores SIGTERM", `trap "" TERM; sleep 300 & echo $! > PIDFILE; wait`, syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			x, _ := newExec(t, &Exec{Shell: "/bin/sh", Cmd: strings.ReplaceAll(tt.cmd, "PIDFILE", pidFile), Timeout: 0.3})
			start := time.Now()
			changed, err := x.CheckApply(context.Background(), true)
			if changed || !errors.Is(err, ErrTimeout) {
				t.Fatalf("CheckApply = %v, %v; want false and ErrTimeout", changed, err)
			}
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Signal != tt.wantSignal {
				t.Errorf("err = %v, want an ExitError for %v", err, tt.wantSignal)
			}
			if elapsed := time.Since(start); elapsed > 30*time.Second {
				t.Errorf("took %v to stop", elapsed)
			}
			// SIGKILL is sent; dying takes the kernel a moment.
			pid := readPid(t, pidFile)
			wait.For(t, 5*time.Second, "the child to die", func() bool { return !alive(pid) })
		})
	}
}

func TestCancelKillsGroup(t *testing.T) {
	leakCheck(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	x, _ := newExec(t, &Exec{Shell: "/bin/sh", Cmd: `sleep 300 & echo $! > ` + pidFile + `; wait`})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := x.CheckApply(ctx, true)
		done <- err
	}()
	pid := readPid(t, pidFile)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("CheckApply did not return after cancel")
	}
	wait.For(t, 5*time.Second, "the child to die", func() bool { return !alive(pid) })
}

// What a command leaves running in its process group when it exits is
// killed, and its output does not hold the run open.
func TestLeftoversKilledAfterExit(t *testing.T) {
	leakCheck(t)
	x, rec := newExec(t, &Exec{Shell: "/bin/sh", Cmd: `sleep 300 & echo $!`})
	changed, err := x.CheckApply(context.Background(), true)
	if !changed || err != nil {
		t.Fatalf("CheckApply = %v, %v", changed, err)
	}
	out := rec.output(stdout)
	if len(out) != 1 {
		t.Fatalf("output %q, want the background pid", out)
	}
	pid, err := strconv.Atoi(out[0])
	if err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "the background child to die", func() bool { return !alive(pid) })
}

func TestIfCmd(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	tests := []struct {
		name, ifcmd, ifshell string
		wantRun              bool
	}{
		{"exit 0 runs", "true", "", true},
		{"exit 1 skips", "false", "", false},
		{"exit 7 through a shell skips", "exit 7", "/bin/sh", false},
		{"test through a shell runs", `test -d "` + dir + `"`, "/bin/sh", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(marker)
			x, _ := newExec(t, &Exec{Cmd: "touch " + marker, IfCmd: tt.ifcmd, IfShell: tt.ifshell})
			changed, err := x.CheckApply(context.Background(), true)
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(marker)
			if ran := statErr == nil; changed != tt.wantRun || ran != tt.wantRun {
				t.Fatalf("changed %v, ran %v; want %v", changed, ran, tt.wantRun)
			}
		})
	}
	t.Run("ifcmd that cannot start is an error", func(t *testing.T) {
		x, _ := newExec(t, &Exec{Cmd: "true", IfCmd: "/nonexistent/mgmt-test"})
		if _, err := x.CheckApply(context.Background(), true); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ifcmd timing out is an error", func(t *testing.T) {
		x, _ := newExec(t, &Exec{Cmd: "true", IfCmd: "sleep 300", Timeout: 0.1})
		if _, err := x.CheckApply(context.Background(), true); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
}

// creates makes an exec idempotent: once the path exists it no longer runs.
func TestCreates(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	done := filepath.Join(dir, "done")
	count := filepath.Join(dir, "count")
	x, _ := newExec(t, &Exec{Shell: "/bin/sh", Cmd: "echo run >> " + count + " && touch " + done, Creates: done})
	if changed, err := x.CheckApply(context.Background(), true); !changed || err != nil {
		t.Fatalf("first CheckApply = %v, %v; want true", changed, err)
	}
	for range 2 {
		if changed, err := x.CheckApply(context.Background(), true); changed || err != nil {
			t.Fatalf("CheckApply after creates exists = %v, %v; want false", changed, err)
		}
	}
	if b, _ := os.ReadFile(count); string(b) != "run\n" {
		t.Fatalf("ran %q, want once", b)
	}
	// A dangling symlink is a path that exists.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
		t.Fatal(err)
	}
	x, _ = newExec(t, &Exec{Cmd: "false", Creates: link})
	if changed, err := x.CheckApply(context.Background(), true); changed || err != nil {
		t.Fatalf("CheckApply with a dangling symlink = %v, %v", changed, err)
	}
}

// With apply false (noop) nothing runs, not even ifcmd; creates still counts.
func TestNoopDoesNotRun(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	ifMarker := filepath.Join(dir, "ifran")
	x, rec := newExec(t, &Exec{Cmd: "touch " + marker, IfCmd: "touch " + ifMarker})
	changed, err := x.CheckApply(context.Background(), false)
	if !changed || err != nil {
		t.Fatalf("CheckApply(apply false) = %v, %v; want true (it would run)", changed, err)
	}
	for _, p := range []string{marker, ifMarker} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists after a noop check", p)
		}
	}
	if len(rec.records("ran")) != 0 {
		t.Error("a noop check logged a run")
	}
	x, _ = newExec(t, &Exec{Cmd: "true", Creates: dir})
	if changed, err := x.CheckApply(context.Background(), false); changed || err != nil {
		t.Fatalf("noop check with creates present = %v, %v; want false", changed, err)
	}
}

func TestEnvAndCwd(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	t.Setenv("MGMT_TEST_INHERITED", "kept")
	t.Setenv("MGMT_TEST_OVERRIDDEN", "old")
	x, rec := newExec(t, &Exec{
		Shell: "/bin/sh",
		Cmd:   `pwd; echo "$MGMT_TEST_INHERITED $MGMT_TEST_OVERRIDDEN $MGMT_TEST_NEW"; echo "[$MGMT_TEST_EMPTY]"`,
		Cwd:   dir,
		Env:   map[string]string{"MGMT_TEST_OVERRIDDEN": "new", "MGMT_TEST_NEW": "a b", "MGMT_TEST_EMPTY": ""},
	})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	want := []string{dir, "kept new a b", "[]"}
	if got := rec.output(stdout); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	x, _ = newExec(t, &Exec{Cmd: "true", Cwd: filepath.Join(dir, "missing")})
	if _, err := x.CheckApply(context.Background(), true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing cwd: err = %v", err)
	}
}

func TestUserAndGroup(t *testing.T) {
	leakCheck(t)
	if os.Getuid() != 0 {
		skip.OrFail(t, "dropping privileges needs root (running as uid %d)", os.Getuid())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		skip.OrFail(t, "no user nobody (Debian's base-passwd has it): %v", err)
	}
	dir := t.TempDir()
	// nobody must be able to reach dir (t.TempDir's parent is 0700) and write in it.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "made-by")
	x, rec := newExec(t, &Exec{
		Shell: "/bin/sh",
		Cmd:   `id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"; touch ` + file,
		User:  "nobody",
	})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	want := []string{nobody.Uid, nobody.Gid, nobody.Gid, nobody.HomeDir + " nobody nobody"}
	if got := rec.output(stdout); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); uid != nobody.Uid {
		t.Fatalf("file owned by %s, want %s", uid, nobody.Uid)
	}

	// A group alone keeps the uid and drops the supplementary groups.
	x, rec = newExec(t, &Exec{Shell: "/bin/sh", Cmd: "id -u; id -g; id -G", Group: nobody.Gid})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.output(stdout), []string{"0", nobody.Gid, nobody.Gid}; !slices.Equal(got, want) {
		t.Fatalf("group only: got %q, want %q", got, want)
	}

	// The dropped identity also applies to ifcmd: nobody cannot write here.
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	x, _ = newExec(t, &Exec{Cmd: "true", IfCmd: "touch " + filepath.Join(private, "x"), User: nobody.Uid})
	if changed, err := x.CheckApply(context.Background(), true); changed || err != nil {
		t.Fatalf("ifcmd as nobody = %v, %v; want false (touch fails)", changed, err)
	}
}

func TestRefresh(t *testing.T) {
	leakCheck(t)
	count := filepath.Join(t.TempDir(), "count")
	x, _ := newExec(t, &Exec{Shell: "/bin/sh", Cmd: "echo x >> " + count})
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "x")
	}
	if changed, err := x.CheckApply(context.Background(), true); !changed || err != nil {
		t.Fatal(changed, err)
	}
	// The check just before already ran it: the refresh has nothing to add.
	if changed, err := x.Refresh(context.Background()); changed || err != nil || runs() != 1 {
		t.Fatalf("Refresh after a run = %v, %v, %d runs; want false, nil, 1", changed, err, runs())
	}
	// A refresh with no run just before runs it.
	if changed, err := x.Refresh(context.Background()); !changed || err != nil || runs() != 2 {
		t.Fatalf("Refresh = %v, %v, %d runs; want true, nil, 2", changed, err, runs())
	}
	// A check that did not run (apply false) does not cover a refresh.
	if _, err := x.CheckApply(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if changed, err := x.Refresh(context.Background()); !changed || err != nil || runs() != 3 {
		t.Fatalf("Refresh after a noop check = %v, %v, %d runs; want true, nil, 3", changed, err, runs())
	}
}

func TestOutputBounded(t *testing.T) {
	leakCheck(t)
	x, rec := newExec(t, &Exec{Shell: "/bin/sh", Cmd: `seq 1 5000; head -c 100000 /dev/zero | tr '\0' a; echo; echo after`})
	if _, err := x.CheckApply(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got := len(rec.output(stdout)); got != maxLoggedLines {
		t.Errorf("logged %d lines, want %d", got, maxLoggedLines)
	}
	cut := rec.records("output cut")
	if len(cut) != 1 || cut[0]["lines"] != "5002" || cut[0]["not_logged"] != strconv.Itoa(5002-maxLoggedLines) {
		t.Errorf("summary %v, want 5002 lines", cut)
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("a", maxLineBytes+10)
	in := "one\r\ntwo\n\n" + long + "\nafter\n" + strings.Repeat("b", 3*maxLineBytes) + "\nlast"
	var got []string
	readLines(strings.NewReader(in), func(s string) { got = append(got, s) })
	want := []string{"one", "two", "", long[:maxLineBytes] + truncatedMark, "after", strings.Repeat("b", maxLineBytes) + truncatedMark, "last"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %d lines %.60q..., want %d", len(got), got, len(want))
	}
}

func TestWatchCmdLinesAreEvents(t *testing.T) {
	leakCheck(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	x, rec := newExec(t, &Exec{
		Cmd:        "true",
		WatchShell: "/bin/sh",
		WatchCmd:   `echo $$ > ` + pidFile + `; for i in 1 2 3; do echo "event $i"; echo "noise $i" >&2; done; exec sleep 300`,
	})
	ev := &events{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Watch(ctx, ev) }()
	pid := readPid(t, pidFile)
	wait.For(t, 5*time.Second, "three Dirty calls", func() bool { return ev.dirty.Load() >= 3 })
	wait.For(t, 5*time.Second, "stderr logged", func() bool { return len(rec.records("watchcmd output")) == 3 })
	if ev.running.Load() != 1 || ev.dirty.Load() != 3 {
		t.Fatalf("Running %d, Dirty %d; want 1 and 3 (stderr lines are not events)", ev.running.Load(), ev.dirty.Load())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	wait.For(t, 5*time.Second, "the watchcmd to die", func() bool { return !alive(pid) })
}

func TestWatchCmdExiting(t *testing.T) {
	leakCheck(t)
	for _, tt := range []struct {
		cmd    string
		status int
	}{{"echo once", 0}, {"false", 1}} {
		x, _ := newExec(t, &Exec{Cmd: "true", WatchCmd: tt.cmd})
		ev := &events{}
		err := x.Watch(context.Background(), ev)
		if !errors.Is(err, ErrWatchExited) {
			t.Fatalf("watchcmd %q: err = %v, want ErrWatchExited", tt.cmd, err)
		}
		var ee *ExitError
		if gotStatus := 0; errors.As(err, &ee) {
			gotStatus = ee.Status
			if gotStatus != tt.status {
				t.Errorf("watchcmd %q: status %d, want %d", tt.cmd, gotStatus, tt.status)
			}
		} else if tt.status != 0 {
			t.Errorf("watchcmd %q: err = %v, want an ExitError", tt.cmd, err)
		}
	}
	x, _ := newExec(t, &Exec{Cmd: "true", WatchCmd: "/nonexistent/mgmt-test"})
	ev := &events{}
	if err := x.Watch(context.Background(), ev); !errors.Is(err, fs.ErrNotExist) || ev.running.Load() != 0 {
		t.Fatalf("watchcmd that cannot start: err %v, Running %d", err, ev.running.Load())
	}
}

func TestPollInt(t *testing.T) {
	leakCheck(t)
	for _, watchcmd := range []string{"", "sleep 300"} {
		x, _ := newExec(t, &Exec{Cmd: "true", PollInt: 0.02, WatchCmd: watchcmd})
		ev := &events{}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- x.Watch(ctx, ev) }()
		wait.For(t, 5*time.Second, "three polls", func() bool { return ev.dirty.Load() >= 3 })
		if elapsed := time.Since(start); elapsed < 60*time.Millisecond {
			t.Errorf("watchcmd %q: 3 polls in %v, less than 3 intervals", watchcmd, elapsed)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("watchcmd %q: Watch = %v", watchcmd, err)
		}
		if ev.running.Load() != 1 {
			t.Fatalf("watchcmd %q: Running %d times", watchcmd, ev.running.Load())
		}
	}
}

func TestWatchWithoutEvents(t *testing.T) {
	x, _ := newExec(t, &Exec{Cmd: "true"})
	ev := &events{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Watch(ctx, ev) }()
	wait.For(t, 5*time.Second, "Running", func() bool { return ev.running.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("Watch returned %v before ctx ended", err)
	default:
	}
	cancel()
	if err := <-done; err != nil || ev.dirty.Load() != 0 {
		t.Fatalf("Watch = %v with %d Dirty calls; want nil and none", err, ev.dirty.Load())
	}
}

// A process that leaves the command's process group (setsid) cannot be
// killed with it; if it holds the output open the run still ends, after
// pipeGrace, and says why.
func TestEscapedProcessDoesNotHoldTheRun(t *testing.T) {
	leakCheck(t)
	if _, err := osexec.LookPath("setsid"); err != nil {
		skip.OrFail(t, "no setsid (test/setup-deps.sh installs util-linux): %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	x, rec := newExec(t, &Exec{
		Shell: "/bin/sh",
		Cmd:   `setsid sh -c 'echo $$ > ` + pidFile + `.tmp && mv ` + pidFile + `.tmp ` + pidFile + `; exec sleep 300' & while [ ! -s ` + pidFile + ` ]; do sleep 0.01; done`,
	})
	changed, err := x.CheckApply(context.Background(), true)
	pid := readPid(t, pidFile)
	defer syscall.Kill(pid, syscall.SIGKILL) // ours: it escaped on purpose
	if !changed || err != nil {
		t.Fatalf("CheckApply = %v, %v", changed, err)
	}
	if !alive(pid) {
		t.Fatal("the escaped process died: the test proves nothing")
	}
	if w := rec.records("output still open after the command's process group ended: something it started left the group and still runs"); len(w) != 1 {
		t.Fatalf("warnings: %v", w)
	}
}
