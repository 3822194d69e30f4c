package multihost

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fleet is a set of mgmt agents on this machine, talking over loopback:
// each with its own --prefix, graph and directory of files, the members
// on free ports. Agent i is host h<i>; every agent runs the demo's graph:
// four files, two of them exported, and the other hosts' exports collected
// into its own directory.
type fleet struct {
	tb     testing.TB
	bin    string
	base   string
	agents []*agentProc
	seeds  []string // client URLs of the members started so far
	log    *dirLog
}

// agentProc is one `mgmt run` of a fleet.
type agentProc struct {
	name   string
	dir    string // its files
	graph  string // its graph file
	prefix string
	cmd    *exec.Cmd
	out    *tailBuffer
	exited chan struct{}
	err    error // set before exited is closed
}

// newFleet prepares n agents (none started) and follows their directories.
func newFleet(tb testing.TB, bin string, n int) *fleet {
	tb.Helper()
	f := &fleet{tb: tb, bin: bin, base: tb.TempDir()}
	var dirs []string
	for i := range n {
		name := fmt.Sprintf("h%02d", i)
		a := &agentProc{
			name:   name,
			dir:    filepath.Join(f.base, name, "files"),
			graph:  filepath.Join(f.base, name, "graph.yaml"),
			prefix: filepath.Join(f.base, name, "prefix"),
		}
		if err := os.MkdirAll(a.dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(a.graph, []byte(hostGraph(a.dir, name, "")), 0o644); err != nil {
			tb.Fatal(err)
		}
		f.agents = append(f.agents, a)
		dirs = append(dirs, a.dir)
	}
	f.log = newDirLog(tb, dirs...)
	tb.Cleanup(f.stop)
	return f
}

// hostGraph is the demo's graph for host h: files f1h..f4h in dir, f3h
// and f4h exported, with extra (more YAML resources) appended.
func hostGraph(dir, h, extra string) string {
	var b strings.Builder
	b.WriteString("resources:\n  file:\n")
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("file%d%s", i, h)
		if i >= 3 {
			name = "@@" + name
		}
		fmt.Fprintf(&b, "  - name: %q\n    path: %s/f%d%s\n    content: \"i am f%d of %s\\n\"\n", name, dir, i, h, i, h)
	}
	b.WriteString(extra)
	fmt.Fprintf(&b, "collect:\n- kind: file\n  pattern: %s/\n", dir)
	return b.String()
}

// startMember starts agent i with an embedded etcd server: the first one
// starts the cluster, the others join it through the members before them.
func (f *fleet) startMember(i int) {
	f.tb.Helper()
	ports := freePorts(f.tb, 2)
	cu := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"--client-urls", cu, "--server-urls", "http://127.0.0.1:" + strconv.Itoa(ports[1])}
	if len(f.seeds) > 0 {
		args = append(args, "--seeds", strings.Join(f.seeds, ","))
	}
	f.start(i, args...)
	f.seeds = append(f.seeds, cu)
}

// startClient starts agent i as a client of the members (--no-server).
func (f *fleet) startClient(i int) {
	f.tb.Helper()
	f.start(i, "--no-server", "--seeds", strings.Join(f.seeds, ","))
}

func (f *fleet) start(i int, extra ...string) {
	f.tb.Helper()
	a := f.agents[i]
	f.run(i, append([]string{"run", "--file", a.graph, "--hostname", a.name, "--prefix", a.prefix}, extra...)...)
}

// startFromCluster starts agent i as a client of the members that runs
// the deploys stored in the cluster (--from-cluster --no-server).
func (f *fleet) startFromCluster(i int) {
	f.tb.Helper()
	a := f.agents[i]
	f.run(i, "run", "--from-cluster", "--hostname", a.name, "--prefix", a.prefix, "--no-server", "--seeds", strings.Join(f.seeds, ","))
}

// run starts agent i's mgmt with args.
func (f *fleet) run(i int, args ...string) {
	f.tb.Helper()
	a := f.agents[i]
	a.cmd = exec.Command(f.bin, args...)
	a.out = &tailBuffer{max: 64 << 10}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.exited = make(chan struct{})
	if err := a.cmd.Start(); err != nil {
		f.tb.Fatalf("start agent %s: %v", a.name, err)
	}
	go func() {
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
}

// want is what the directories of the first n agents hold once they have
// exchanged their exports: each its own four files and f3, f4 (and those
// in extra) of every other one.
func (f *fleet) want(n int, extra map[string][]string) map[string][]string {
	want := make(map[string][]string, n)
	for _, a := range f.agents[:n] {
		names := []string{"f1" + a.name, "f2" + a.name, "f3" + a.name, "f4" + a.name}
		names = append(names, extra[a.name]...)
		for _, o := range f.agents[:n] {
			if o != a {
				names = append(names, "f3"+o.name, "f4"+o.name)
				names = append(names, extra[o.name]...)
			}
		}
		slices.Sort(names)
		want[a.dir] = names
	}
	return want
}

// wait waits until the first n agents have exchanged their exports and
// returns when that was seen; a failure names the agents that exited.
func (f *fleet) wait(n int, extra map[string][]string, limit time.Duration) time.Time {
	f.tb.Helper()
	at, err := f.log.waitHolds(f.want(n, extra), limit)
	if err != nil {
		f.tb.Fatalf("%d agents: %v%s", n, err, f.exitedAgents())
	}
	return at
}

func (f *fleet) exitedAgents() string {
	var b strings.Builder
	for _, a := range f.agents {
		if a.cmd == nil {
			continue
		}
		select {
		case <-a.exited:
			fmt.Fprintf(&b, "\nagent %s exited: %v\n%s", a.name, a.err, a.out.String())
		default:
		}
	}
	return b.String()
}

// stop ends every agent: SIGTERM to all at once (clients first, so that
// they do not spend the members' last moments reconnecting), then SIGKILL
// to those still running after 15 s.
func (f *fleet) stop() {
	var running []*agentProc
	for _, a := range slices.Backward(f.agents) {
		if a.cmd != nil && a.cmd.Process != nil {
			a.cmd.Process.Signal(syscall.SIGTERM)
			running = append(running, a)
		}
	}
	deadline := time.After(15 * time.Second)
	for _, a := range running {
		select {
		case <-a.exited:
		case <-deadline:
			a.cmd.Process.Kill()
			<-a.exited
			f.tb.Logf("agent %s did not stop on SIGTERM within 15 s:\n%s", a.name, a.out.String())
		}
	}
	for _, a := range f.agents {
		a.cmd = nil
	}
}

// usage is the memory and CPU time of a process.
type usage struct {
	rssMB, pssMB float64
	cpu          time.Duration // on a CPU, user and system
}

func (a *agentProc) usage() (usage, error) {
	pid := a.cmd.Process.Pid
	var u usage
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(fs[1], 64)
		switch fs[0] {
		case "Rss:":
			u.rssMB = kb / 1024
		case "Pss:":
			u.pssMB = kb / 1024
		}
	}
	// The first field of a thread's schedstat is its time on a CPU, in
	// ns. (Threads that exited are missed; Go's hardly ever exit.)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return u, err
	}
	for _, t := range tasks {
		ss, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread is gone
		}
		fs := strings.Fields(string(ss))
		if len(fs) == 0 {
			return u, errors.New("empty schedstat")
		}
		ns, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return u, fmt.Errorf("schedstat: %w", err)
		}
		u.cpu += time.Duration(ns)
	}
	return u, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex // guards b
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
