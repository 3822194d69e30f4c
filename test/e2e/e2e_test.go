// Package e2e runs the built mgmt binary the way users do.
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mgmt-e2e-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "mgmt")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/mgmt")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mgmt:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is a running `mgmt run`.
type agent struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error
}

func start(t *testing.T, args ...string) *agent {
	t.Helper()
	return startBinary(t, bin, args...)
}

// startBinary is start with the mgmt binary at path.
func startBinary(t *testing.T, path string, args ...string) *agent {
	t.Helper()
	a := &agent{out: &syncBuffer{}, exited: make(chan error, 1)}
	a.cmd = exec.Command(path, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.cmd.Process.Kill()
			<-a.exited
		}
		if t.Failed() {
			t.Logf("mgmt output:\n%s", a.out.String())
		}
	})
	return a
}

// wait returns the exit status, failing the test after limit.
func (a *agent) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case err := <-a.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(limit):
		t.Fatalf("mgmt still running after %v", limit)
		return -1
	}
}

func writeGraph(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "graph.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "mgmt version ") {
		t.Fatalf("--version: %v: %s", err, out)
	}
}

func TestOneShotRunConverges(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, fmt.Sprintf(`
resources:
  file:
  - name: d
    path: %[1]s/d/
  - name: f
    path: %[1]s/d/f
    content: "hello\n"
  exec:
  - name: after
    cmd: /bin/sh -c "cat %[1]s/d/f > %[1]s/copy"
edges:
- {name: e, from: {kind: file, name: f}, to: {kind: exec, name: after}}
`, dir))
	a := start(t, "run", "--file", g, "--converged-timeout=0", "--graphviz", filepath.Join(dir, "g.dot"))
	if code := a.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := readFile(filepath.Join(dir, "copy")); got != "hello\n" {
		t.Fatalf("the exec ran before the file was written, or not at all: %q", got)
	}
	dot := readFile(filepath.Join(dir, "g.dot"))
	if !strings.Contains(dot, "file[d]") || !strings.Contains(dot, "autoedge") {
		t.Fatalf("graphviz output lacks the automatic edge d -> f:\n%s", dot)
	}
}

func TestInvalidGraphAppliesNothing(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, fmt.Sprintf(`
resources:
  file:
  - name: good
    path: %s/should-not-exist
    content: "x"
  exec:
  - name: bad
    cmd: echo
    timeout: soon
`, dir))
	a := start(t, "run", "--file", g, "--converged-timeout=0")
	if code := a.wait(t, 30*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "should-not-exist")); err == nil {
		t.Fatal("a resource of an invalid graph was applied")
	}
	want := g + `:10:14: exec[bad]: parameters: field "timeout"`
	if !strings.Contains(a.out.String(), want) {
		t.Fatalf("message lacks %q:\n%s", want, a.out.String())
	}
	out, err := exec.Command(bin, "validate", "--file", g).CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), want) {
		t.Fatalf("validate: exit %d: %s", code, out)
	}
}

func TestFailureIsReportedAndIsolated(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, fmt.Sprintf(`
resources:
  exec:
  - name: broken
    cmd: /bin/false
    meta: {retry: 1, delay: 10}
  - name: child
    cmd: touch %[1]s/child-ran
  - name: independent
    cmd: touch %[1]s/independent-ran
edges:
- {name: e, from: {kind: exec, name: broken}, to: {kind: exec, name: child}}
`, dir))
	report := filepath.Join(dir, "report.json")
	a := start(t, "run", "--file", g, "--converged-timeout=1", "--report", report)
	if code := a.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var rep struct {
		Result string
		Failed int
		Res    []struct {
			Res      string
			Failed   bool
			Failures int
			Error    string
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(readFile(report)), &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.Result != "failed" || rep.Failed != 1 || len(rep.Res) != 3 ||
		rep.Res[0].Res != "exec[broken]" || !rep.Res[0].Failed || rep.Res[0].Failures != 2 || rep.Res[0].Error == "" {
		t.Fatalf("report does not describe the run: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "independent-ran")); err != nil {
		t.Fatal("an independent branch was held back by a failure")
	}
	if _, err := os.Stat(filepath.Join(dir, "child-ran")); err == nil {
		t.Fatal("the child of a failed resource ran")
	}
	if !strings.Contains(a.out.String(), "exec[broken]") {
		t.Fatalf("the failure summary does not name exec[broken]:\n%s", a.out.String())
	}
}

// The parallel demo: a chain of three commands and one alone. The lone
// one must run while the chain does.
func TestIndependentBranchesOverlap(t *testing.T) {
	dir := t.TempDir()
	step := func(name string) string {
		return fmt.Sprintf(`  - name: %[1]s
    shell: /bin/sh
    cmd: "date +%%s.%%N > %[2]s/%[1]s.start; sleep 0.5; date +%%s.%%N > %[2]s/%[1]s.end"
`, name, dir)
	}
	g := writeGraph(t, dir, "resources:\n  exec:\n"+step("exec1")+step("exec2")+step("exec3")+step("exec4")+`
edges:
- {name: e1, from: {res: exec, name: exec1}, to: {res: exec, name: exec2}}
- {name: e2, from: {res: exec, name: exec2}, to: {res: exec, name: exec3}}
`)
	a := start(t, "run", "--file", g, "--converged-timeout=0")
	if code := a.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	ts := func(n string) string { return strings.TrimSpace(readFile(filepath.Join(dir, n))) }
	// Timestamps of equal width compare as strings.
	if !(ts("exec1.end") <= ts("exec2.start") && ts("exec2.end") <= ts("exec3.start")) {
		t.Fatal("the chain did not run in order")
	}
	if !(ts("exec4.start") < ts("exec1.end")) {
		t.Fatalf("exec4 started at %s, after exec1 ended at %s: not parallel", ts("exec4.start"), ts("exec1.end"))
	}
}

func TestDriftRepairAndReload(t *testing.T) {
	dir := t.TempDir()
	f1 := filepath.Join(dir, "f1")
	graph := func(extra string) string {
		return fmt.Sprintf("resources:\n  file:\n  - name: f1\n    path: %s\n    content: \"one\\n\"\n%s", f1, extra)
	}
	g := writeGraph(t, dir, graph(""))
	a := start(t, "run", "--file", g)
	wait.For(t, 10*time.Second, "f1 created", func() bool { return readFile(f1) == "one\n" })

	os.Remove(f1)
	wait.For(t, 10*time.Second, "f1 restored after delete", func() bool { return readFile(f1) == "one\n" })
	os.WriteFile(f1, []byte("tampered"), 0o644)
	wait.For(t, 10*time.Second, "f1 restored after edit", func() bool { return readFile(f1) == "one\n" })

	// A new valid graph: f2 appears.
	f2 := filepath.Join(dir, "f2")
	writeGraph(t, dir, graph(fmt.Sprintf("  - name: f2\n    path: %s\n    content: \"two\\n\"\n", f2)))
	wait.For(t, 10*time.Second, "f2 created by the reloaded graph", func() bool { return readFile(f2) == "two\n" })

	// An invalid graph is refused; the running one keeps working.
	writeGraph(t, dir, graph("  - name: f3\n    path: relative/path\n"))
	wait.For(t, 10*time.Second, "the invalid graph to be reported", func() bool { return strings.Contains(a.out.String(), "new graph refused") })
	os.Remove(f2)
	wait.For(t, 10*time.Second, "f2 still managed after an invalid reload", func() bool { return readFile(f2) == "two\n" })

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

func TestNoopChangesNothing(t *testing.T) {
	dir := t.TempDir()
	g := writeGraph(t, dir, fmt.Sprintf("resources:\n  file:\n  - name: f\n    path: %s/f\n    content: x\n", dir))
	a := start(t, "run", "--file", g, "--noop", "--converged-timeout=0")
	if code := a.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err == nil {
		t.Fatal("--noop created a file")
	}
	if !strings.Contains(a.out.String(), "would change") {
		t.Fatalf("--noop did not report the change:\n%s", a.out.String())
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With --no-watch the file is read again only on SIGHUP.
func TestSighupReloads(t *testing.T) {
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "f1"), filepath.Join(dir, "f2")
	g := writeGraph(t, dir, fmt.Sprintf("resources:\n  file:\n  - name: f1\n    path: %s\n    content: one\n", f1))
	a := start(t, "run", "--file", g, "--no-watch")
	wait.For(t, 10*time.Second, "f1", func() bool { return readFile(f1) == "one" })
	writeGraph(t, dir, fmt.Sprintf("resources:\n  file:\n  - name: f2\n    path: %s\n    content: two\n", f2))
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "f2 after SIGHUP", func() bool { return readFile(f2) == "two" })
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// An invalid graph still gets a report, so a cron job never reads an
// earlier run's report as this one's.
func TestReportOfInvalidGraph(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	os.WriteFile(report, []byte("stale"), 0o644)
	g := writeGraph(t, dir, "resources:\n  exex: [{name: a}]\n")
	a := start(t, "run", "--file", g, "--converged-timeout=0", "--report", report)
	if code := a.wait(t, 30*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	var rep struct{ Result, Error string }
	if err := json.Unmarshal([]byte(readFile(report)), &rep); err != nil || rep.Result != "invalid" || !strings.Contains(rep.Error, "exex") {
		t.Fatalf("report %+v (%v)", rep, err)
	}
}
