package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustRun(t *testing.T, h *Host, argv ...string) string {
	t.Helper()
	out, err := h.Run(testCtx(t, 30*time.Second), argv...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// tmpEntry is an entry of the real /tmp.
type tmpEntry struct {
	name  string
	mtime time.Time
}

// tmpListing lists the real /tmp.
func tmpListing(t *testing.T) map[string]tmpEntry {
	t.Helper()
	ents, err := os.ReadDir("/tmp")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]tmpEntry{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out[e.Name()] = tmpEntry{e.Name() + " " + info.Mode().Type().String(), info.ModTime()}
	}
	return out
}

// hostMade matches what a host's systemd and tests create in its /tmp: in
// the real /tmp they would mean that isolation failed.
var hostMade = regexp.MustCompile(`^(\.ICE-unix|\.X11-unix|\.XIM-unix|\.font-unix|systemd-private-.*|inside)$`)

// checkTmp compares two listings of the real /tmp. Other test processes
// (go test runs packages in parallel; other work runs on a shared machine)
// add and remove their own young entries meanwhile: those are only
// logged. What fails the test is what a host could have done: an entry a
// host makes appearing, or an old entry vanishing (systemd-tmpfiles wipes
// /tmp at boot).
func checkTmp(t *testing.T, before, after map[string]tmpEntry, since time.Time) {
	t.Helper()
	for name, e := range before {
		if _, ok := after[name]; ok {
			continue
		}
		if e.mtime.Before(since.Add(-10 * time.Minute)) {
			t.Errorf("real /tmp: old entry %s vanished", e.name)
		} else {
			t.Logf("real /tmp: young entry %s vanished (another process's)", e.name)
		}
	}
	for name, e := range after {
		if _, ok := before[name]; ok {
			continue
		}
		if hostMade.MatchString(name) {
			t.Errorf("real /tmp: %s appeared, as a host would make it", e.name)
		} else {
			t.Logf("real /tmp: %s appeared (another process's)", e.name)
		}
	}
}

// mountTable lists the real machine's mount points, leaving out the named
// network namespaces that concurrent tests may add (hosts never mount
// anything outside their own mount namespace).
func mountTable(t *testing.T) []string {
	t.Helper()
	ms, err := MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(ms, func(m string) bool { return strings.HasPrefix(m, netnsDir+"/") })
}

func diffLists(before, after []string) string {
	var b strings.Builder
	for _, x := range before {
		if !slices.Contains(after, x) {
			fmt.Fprintf(&b, "\n- %s", x)
		}
	}
	for _, x := range after {
		if !slices.Contains(before, x) {
			fmt.Fprintf(&b, "\n+ %s", x)
		}
	}
	return b.String()
}

// TestIsolation writes and deletes files inside a host, including what
// systemd-tmpfiles would wipe on a shared root, and checks that the real
// machine saw none of it.
func TestIsolation(t *testing.T) {
	Require(t)
	// Sentinels in the real /tmp, old ones and a hidden one: booting
	// systemd on the shared root would have systemd-tmpfiles wipe them.
	old := time.Now().Add(-90 * 24 * time.Hour)
	var sentinels []string
	for _, pattern := range []string{"testhost-sentinel-", ".testhost-sentinel-"} {
		f, err := os.CreateTemp("", pattern)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		d, err := os.MkdirTemp("", pattern)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "f"), nil, 0o644)
		for _, p := range []string{filepath.Join(d, "f"), d, f.Name()} {
			os.Chtimes(p, old, old)
		}
		sentinels = append(sentinels, f.Name(), d)
		t.Cleanup(func() { os.Remove(f.Name()); os.RemoveAll(d) })
	}
	sentinel := sentinels[0]

	t0 := time.Now()
	tmpBefore, mountsBefore := tmpListing(t), mountTable(t)
	// os-release: every systemd machine has it (Require checked systemd).
	const realFile = "/etc/os-release"
	realData, err := os.ReadFile(realFile)
	if err != nil {
		t.Fatalf("the real machine's %s: %v", realFile, err)
	}
	written := fmt.Sprintf("/etc/mgmt-testhost-write-%d", os.Getpid())

	h, err := Start(testCtx(t, time.Minute), Options{Logger: TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	t.Logf("boot: %v", h.BootDuration())

	if out := mustRun(t, h, "sh", "-c", "cat /proc/1/comm; stat -fc %T /"); out != "systemd\noverlayfs\n" {
		t.Errorf("inside: PID 1 and root fs are %q, want systemd on overlayfs", out)
	}
	if got := mustRun(t, h, "stat", "-fc", "%T", "/tmp"); got != "tmpfs\n" {
		t.Errorf("host's /tmp is %q, want a tmpfs", got)
	}
	if _, err := os.Stat(h.Root() + sentinel); err == nil {
		t.Errorf("the real /tmp's %s is visible inside", sentinel)
	}
	mustRun(t, h, "rm", realFile)
	mustRun(t, h, "sh", "-c", "echo inside >"+written+" && echo inside >/tmp/inside && touch /run/inside")
	if err := h.WriteFile("/usr/local/bin/mgmt-testhost-api-write", []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(testCtx(t, 10*time.Second), "test", "-e", realFile); err == nil {
		t.Errorf("%s still exists inside after rm", realFile)
	}
	if got := mustRun(t, h, "cat", written); got != "inside\n" {
		t.Errorf("inside: %s = %q", written, got)
	}
	// systemd-tmpfiles ran at boot inside: the sentinels must have survived.
	for _, s := range sentinels {
		if _, err := os.Stat(s); err != nil {
			t.Errorf("sentinel in the real /tmp: %v", err)
		}
	}

	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(realFile); err != nil || !bytes.Equal(data, realData) {
		t.Errorf("real %s changed: %q, %v", realFile, data, err)
	}
	for _, p := range []string{written, "/usr/local/bin/mgmt-testhost-api-write", "/tmp/inside", "/run/inside"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s, written inside the host, exists on the real machine", p)
			os.Remove(p)
		}
	}
	checkTmp(t, tmpBefore, tmpListing(t), t0)
	if d := diffLists(mountsBefore, mountTable(t)); d != "" {
		t.Errorf("real mount table changed:%s", d)
	}
}

// TestNoLeftovers checks that Stop leaves no process, namespace, mount,
// cgroup or state directory behind, with a background command still
// running in the host at the time.
func TestNoLeftovers(t *testing.T) {
	Require(t)
	mountsBefore := mountTable(t)
	h, err := Start(testCtx(t, time.Minute), Options{Logger: TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	p, err := h.Spawn(testCtx(t, time.Minute), "sleep", "infinity")
	if err != nil {
		t.Fatal(err)
	}
	nsIDs := map[string]string{}
	for _, ns := range []string{"mnt", "pid", "uts", "ipc", "net", "cgroup"} {
		id, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", h.PID(), ns))
		if err != nil {
			t.Fatal(err)
		}
		nsIDs[id] = ns
	}
	pids := procsIn(h.cg.path)
	if !slices.Contains(pids, p.PID()) || !slices.Contains(pids, h.PID()) {
		t.Fatalf("cgroup %s holds %v, want PID 1 %d and the spawned %d", h.cg.path, pids, h.PID(), p.PID())
	}
	t.Logf("before stop: %d processes in the host's cgroup", len(pids))

	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop: %v", h.StopDuration())
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("spawned command still running after Stop")
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); nsIDs[ns] != "" {
				t.Errorf("process %d of the host still exists", pid)
			}
		}
	}
	// No process of the machine is in any of the host's namespaces, and no
	// mount pins one.
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/*")
	for _, link := range procs {
		if id, err := os.Readlink(link); err == nil && nsIDs[id] != "" {
			t.Errorf("%s is still in the host's %s namespace", link, nsIDs[id])
		}
	}
	for _, p := range []string{h.cg.path, h.Dir()} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if d := diffLists(mountsBefore, mountTable(t)); d != "" {
		t.Errorf("real mount table changed:%s", d)
	}
	if _, err := h.Run(testCtx(t, 5*time.Second), "true"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Run after Stop: %v, want ErrNotRunning", err)
	}
	if err := h.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestParallelHosts boots two hosts at once and checks that they are
// distinct machines.
func TestParallelHosts(t *testing.T) {
	Require(t)
	var wg sync.WaitGroup
	hosts := make([]*Host, 2)
	errs := make([]error, 2)
	for i := range hosts {
		wg.Go(func() {
			hosts[i], errs[i] = Start(testCtx(t, time.Minute), Options{Name: fmt.Sprintf("par%d", i), Logger: TestLogger(t)})
		})
	}
	wg.Wait()
	for i, h := range hosts {
		if h != nil {
			t.Cleanup(func() { h.Stop() })
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	for i, h := range hosts {
		if got := strings.TrimSpace(mustRun(t, h, "hostname")); got != h.Name() {
			t.Errorf("host %d: hostname %q, want %q", i, got, h.Name())
		}
		if err := h.WriteFile("/etc/mgmt-owner", []byte(h.Name()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hosts {
		if got, err := h.ReadFile("/etc/mgmt-owner"); err != nil || string(got) != h.Name() {
			t.Errorf("%s sees /etc/mgmt-owner = %q, %v", h.Name(), got, err)
		}
	}
	id0, _ := hosts[0].ReadFile("/etc/machine-id")
	id1, _ := hosts[1].ReadFile("/etc/machine-id")
	if bytes.Equal(id0, id1) {
		t.Errorf("both hosts have machine-id %s", id0)
	}
	for _, h := range hosts {
		m, err := h.Memory()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: boot %v, %v", h.Name(), h.BootDuration(), m)
	}
}

// TestFilesStayInside checks CopyIn, InstallBinary and that a symbolic
// link inside a host cannot lead a write out to the real machine.
func TestFilesStayInside(t *testing.T) {
	h := StartT(t, Options{})
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o600)
	os.Symlink("sub/f", filepath.Join(src, "link"))
	if err := h.CopyIn(src, "/srv/copied"); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, h, "sh", "-c", "cat /srv/copied/link; stat -c %a /srv/copied/sub/f"); got != "data600\n" {
		t.Errorf("copied tree: %q", got)
	}
	bin, err := h.InstallBinary("/bin/true", "mgmt-true")
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, h, bin)

	// A link inside the host to a path that exists on the real machine but
	// not inside: a write through it must stay in the host.
	realDir := t.TempDir()
	target := filepath.Join(realDir, "escaped")
	mustRun(t, h, "ln", "-s", target, "/etc/mgmt-link")
	err = h.WriteFile("/etc/mgmt-link", []byte("x"), 0o644)
	t.Logf("write through a link to a path missing inside: %v", err)
	if _, err := os.Stat(target); err == nil {
		t.Fatalf("a write through a link inside the host reached the real %s", target)
	}
}

// TestRun checks Run's errors, and Spawn and Stop of a background command.
func TestRun(t *testing.T) {
	h := StartT(t, Options{})
	_, err := h.Run(testCtx(t, 10*time.Second), "sh", "-c", "echo oops >&2; exit 3")
	var re *RunError
	if !errors.As(err, &re) || strings.TrimSpace(string(re.Stderr)) != "oops" {
		t.Fatalf("Run error %v, want a RunError with stderr oops", err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Run error %v, want exit code 3", err)
	}

	p, err := h.Spawn(testCtx(t, time.Minute), "sh", "-c", "echo started; exec sleep infinity")
	if err != nil {
		t.Fatal(err)
	}
	inner := strings.TrimSpace(mustRun(t, h, "pgrep", "-x", "sleep"))
	if inner == "" {
		t.Fatal("spawned sleep not seen inside")
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if !strings.Contains(p.Output(), "started") {
		t.Errorf("output %q", p.Output())
	}
	if _, err := h.Run(testCtx(t, 10*time.Second), "pgrep", "-x", "sleep"); err == nil {
		t.Error("sleep still runs inside after Stop")
	}

	// A context that ends kills the command inside, not only nsenter.
	ctx, cancel := context.WithCancel(context.Background())
	p, err = h.Spawn(ctx, "sleep", "infinity")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	p.Wait()
	wait.For(t, 10*time.Second, "the process to be gone", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID()))
		return err != nil
	})
}

// TestVerifyRefuses runs the isolation gate on an ordinary process of the
// real machine: it must refuse, naming why.
func TestVerifyRefuses(t *testing.T) {
	Require(t)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &Host{name: "fake", pid: cmd.Process.Pid, cg: &cgroup{rel: "/" + cgroupParent + "/none"}, exited: make(chan struct{})}
	err := h.verify(Options{})
	if !errors.Is(err, ErrIsolation) {
		t.Fatalf("verify on a plain process: %v, want ErrIsolation", err)
	}
	for _, want := range []string{"mnt namespace is the real machine's", "pid namespace", "NSpid", "/tmp is not empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("verify error lacks %q: %v", want, err)
		}
	}
}

// fakeTB records what Require does with the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skip(args ...any)                  { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestSkipOrFail(t *testing.T) {
	miss := []string{"root (running as uid 1000)", "overlayfs (not in /proc/filesystems)"}
	t.Setenv(RequireEnv, "")
	f := &fakeTB{TB: t}
	skipOrFail(f, miss)
	if f.failed != "" || !strings.Contains(f.skipped, "root (running as uid 1000), overlayfs") {
		t.Errorf("without %s: skipped %q failed %q", RequireEnv, f.skipped, f.failed)
	}
	t.Setenv(RequireEnv, "1")
	f = &fakeTB{TB: t}
	skipOrFail(f, miss)
	if f.skipped != "" || !strings.Contains(f.failed, "root (running as uid 1000)") {
		t.Errorf("with %s=1: skipped %q failed %q", RequireEnv, f.skipped, f.failed)
	}
	f = &fakeTB{TB: t}
	skipOrFail(f, nil)
	if f.skipped != "" || f.failed != "" {
		t.Errorf("nothing missing: skipped %q failed %q", f.skipped, f.failed)
	}
}

// BenchmarkBootStop measures a host's whole life: boot until ready, then
// stop with cleanup.
func BenchmarkBootStop(b *testing.B) {
	Require(b)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var boot, stop time.Duration
	var mem Memory
	n := 0
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		h, err := Start(ctx, Options{Logger: logger})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			mem, _ = h.Memory()
		}
		if err := h.Stop(); err != nil {
			b.Fatal(err)
		}
		boot += h.BootDuration()
		stop += h.StopDuration()
		n++
	}
	b.ReportMetric(float64(boot.Milliseconds())/float64(n), "boot-ms")
	b.ReportMetric(float64(stop.Milliseconds())/float64(n), "stop-ms")
	b.ReportMetric(float64(mem.PSS)/(1<<20), "PSS-MB")
	b.ReportMetric(float64(mem.Tmpfs)/(1<<20), "tmpfs-MB")
}

// TestLoopNodes: a host's /dev has loop nodes only with Options.Loop:
// loop-control, and a block node for every loop device the machine has not
// attached (none for one it has).
func TestLoopNodes(t *testing.T) {
	plain := StartT(t, Options{})
	if got := mustRun(t, plain, "sh", "-c", "ls /dev | grep -c '^loop' || true"); got != "0\n" {
		t.Errorf("a host without Loop has %s loop nodes", strings.TrimSpace(got))
	}
	h := StartT(t, Options{Loop: true})
	if got := mustRun(t, h, "stat", "-c", "%F %t:%T %a", "/dev/loop-control"); got != "character special file a:ed 600\n" {
		t.Errorf("/dev/loop-control: %q", got)
	}
	out := mustRun(t, h, "sh", "-c", "stat -c '%n %F %t:%T' /dev/loop[0-9]*")
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		name, rest, _ := strings.Cut(l, " ")
		got[name] = rest
	}
	for n := range loopNodes {
		name := fmt.Sprintf("/dev/loop%d", n)
		if _, err := os.Stat(fmt.Sprintf("/sys/block/loop%d/loop/backing_file", n)); err == nil {
			continue // attached now; it may have been attached after the host booted
		}
		want, ok := "block special file 7:", false // the minor: as the machine's node has it, if it has one
		if b, err := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/dev", n)); err == nil {
			var major, minor int
			fmt.Sscanf(string(b), "%d:%d", &major, &minor)
			want, ok = fmt.Sprintf("block special file %x:%x", major, minor), true
		}
		if ok && got[name] != want || !ok && !strings.HasPrefix(got[name], want) {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
	if len(got) > loopNodes {
		t.Errorf("%d loop nodes, want at most %d", len(got), loopNodes)
	}
}
