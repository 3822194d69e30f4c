package exec

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// TestMain makes the test process a child subreaper, so that every process
// a test starts, however deep, stays its descendant: leakCheck can then see
// any that outlives its test.
func TestMain(m *testing.M) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// liveChildren lists the test process's children that are not zombies.
func liveChildren() []string {
	me := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var live []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')') // the command name may hold anything
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, ...
		if len(f) >= 2 && f[1] == me && f[0] != "Z" {
			live = append(live, s[:i+1])
		}
	}
	return live
}

// leakCheck fails t if, once it ends, some process it started is still
// alive (a killed process may take a moment to die).
func leakCheck(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			live := liveChildren()
			if len(live) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("processes left running: %v", live)
				for _, l := range live {
					if pid, err := strconv.Atoi(strings.Fields(l)[0]); err == nil {
						_ = unix.Kill(pid, unix.SIGKILL)
					}
				}
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// alive reports whether pid is a process that has not exited.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// record is one logged line, its message and attributes as text.
type record map[string]string

// recorder is a slog handler that keeps what is logged.
type recorder struct {
	mu   sync.Mutex // guards recs
	recs []record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := record{"msg": rec.Message, "level": rec.Level.String()}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, m)
	return nil
}

// records returns the records whose message is msg.
func (r *recorder) records(msg string) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, m := range r.recs {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// output returns the logged output lines of stream.
func (r *recorder) output(s stream) []string {
	var lines []string
	for _, m := range r.records("output") {
		if m["stream"] == string(s) {
			lines = append(lines, m["line"])
		}
	}
	return lines
}

// newExec validates x and gives it a recording logger.
func newExec(t *testing.T, x *Exec) (*Exec, *recorder) {
	t.Helper()
	if err := x.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	rec := &recorder{}
	if err := x.Init(engine.Env{Kind: "exec", Name: t.Name(), Logger: slog.New(rec)}); err != nil {
		t.Fatal(err)
	}
	return x, rec
}

// events counts what Watch reports.
type events struct {
	running, dirty atomic.Int32
}

func (e *events) Running() { e.running.Add(1) }
func (e *events) Dirty()   { e.dirty.Add(1) }

// readPid waits for path to hold a pid and returns it.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	wait.For(t, 5*time.Second, "a pid in "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}
