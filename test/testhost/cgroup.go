package testhost

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupParent is the directory, under the cgroup2 hierarchy's root, that
// holds one cgroup per host.
const cgroupParent = "mgmt-testhost"

// cgroup is a host's own cgroup2 directory: the root of its cgroup
// namespace, where its systemd builds its tree.
type cgroup struct {
	path string // on the real machine, e.g. /sys/fs/cgroup/mgmt-testhost/123-1
	rel  string // relative to the hierarchy's root, e.g. /mgmt-testhost/123-1

	mu  sync.Mutex // guards dir
	dir *os.File   // open directory, for CLONE_INTO_CGROUP; nil once removed
}

// cgroup2Mount finds where the cgroup2 hierarchy is mounted: /sys/fs/cgroup
// on a unified system, /sys/fs/cgroup/unified on a hybrid one.
var cgroup2Mount = sync.OnceValues(func() (string, error) {
	mi, err := readMountInfo("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	var found []string
	for _, m := range mi {
		if m.FSType == "cgroup2" && m.Root == "/" {
			found = append(found, m.MountPoint)
		}
	}
	if len(found) == 0 {
		return "", errors.New("no cgroup2 hierarchy is mounted")
	}
	sort.Slice(found, func(i, j int) bool { return len(found[i]) < len(found[j]) })
	return found[0], nil
})

// newCgroup makes the cgroup named name under cgroupParent, after removing
// empty cgroups that crashed runs of other processes left behind.
func newCgroup(name string) (*cgroup, error) {
	root, err := cgroup2Mount()
	if err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	parent := filepath.Join(root, cgroupParent)
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("testhost: cgroup: %w", err)
	}
	sweepCgroups(parent)
	c := &cgroup{
		path: filepath.Join(parent, name),
		rel:  "/" + cgroupParent + "/" + name,
	}
	if err := os.Mkdir(c.path, 0o755); err != nil {
		return nil, fmt.Errorf("testhost: cgroup: %w", err)
	}
	c.dir, err = os.Open(c.path)
	if err != nil {
		os.Remove(c.path)
		return nil, fmt.Errorf("testhost: cgroup: %w", err)
	}
	return c, nil
}

// fd returns the open cgroup directory, or -1 once removed.
func (c *cgroup) fd() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir == nil {
		return -1
	}
	return int(c.dir.Fd())
}

var staleName = regexp.MustCompile(`^([0-9]+)-([0-9]+|probe)$`)

// sweepCgroups removes the cgroups of processes that no longer exist, if
// they are empty (the kernel killed their hosts with their starter).
func sweepCgroups(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if populated(p) {
			continue
		}
		removeTree(p)
	}
}

// populated reports whether processes live anywhere in the cgroup's subtree.
func populated(path string) bool {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("populated 1"))
}

// procsIn lists the PIDs in the cgroup's whole subtree.
func procsIn(path string) []int {
	var pids []int
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if n, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids
}

// removeTree removes a cgroup directory and all below it, deepest first.
func removeTree(path string) error {
	var dirs []string
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

const cgroupEmptyTimeout = 10 * time.Second

// kill SIGKILLs every process in the cgroup's subtree.
func (c *cgroup) kill() error {
	return os.WriteFile(filepath.Join(c.path, "cgroup.kill"), []byte("1"), 0)
}

// remove kills whatever still runs in the cgroup (there should be nothing
// once PID 1 has exited: the kernel kills a pid namespace with its init),
// waits until it is empty and removes it. It is idempotent.
func (c *cgroup) remove() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir != nil {
		c.dir.Close()
		c.dir = nil
	}
	if _, err := os.Stat(c.path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	deadline := time.Now().Add(cgroupEmptyTimeout)
	killed := false
	for populated(c.path) {
		if !killed {
			// cgroup.kill (Linux 5.14) SIGKILLs every process in the subtree.
			if err := c.kill(); err != nil {
				return fmt.Errorf("testhost: cgroup %s still has processes %v and cgroup.kill failed: %w", c.path, procsIn(c.path), err)
			}
			killed = true
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testhost: cgroup %s still has processes %v", c.path, procsIn(c.path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// An empty cgroup may still be busy for a moment while the last exiting
	// task is released.
	var err error
	for {
		if err = removeTree(c.path); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("testhost: removing cgroup: %w", err)
	}
	return nil
}

// execCgroup is the cgroup of one command run in a host (below the host's
// own): killing it kills nsenter and everything the command started.
type execCgroup struct {
	path string
	dir  *os.File
	h    *Host
}

func (h *Host) newExecCgroup() (*execCgroup, error) {
	if h.cg.fd() < 0 {
		return nil, ErrNotRunning
	}
	p := filepath.Join(h.cg.path, fmt.Sprintf("testhost-exec-%d", h.execSeq.Add(1)))
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		unix.Rmdir(p)
		return nil, err
	}
	e := &execCgroup{path: p, dir: f, h: h}
	h.mu.Lock()
	h.execs[e] = struct{}{}
	h.mu.Unlock()
	return e, nil
}

// kill kills the command first, then, if need be, its nsenter. nsenter
// lives outside the host's pid namespace and reaps the command when it
// dies; killed first, it would orphan the command to the real machine's
// init, which may leave it a zombie that keeps the host's pid namespace
// from ever finishing its exit.
func (e *execCgroup) kill() error {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return err
	}
	for _, pid := range procsIn(e.path) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && ns != self {
			if fd, err := unix.PidfdOpen(pid, 0); err == nil {
				unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
				unix.Close(fd)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for populated(e.path) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !populated(e.path) {
		return nil
	}
	return os.WriteFile(filepath.Join(e.path, "cgroup.kill"), []byte("1"), 0)
}

// release kills what is left in the cgroup and removes it. nil is a no-op.
func (e *execCgroup) release() {
	if e == nil {
		return
	}
	e.h.mu.Lock()
	delete(e.h.execs, e)
	e.h.mu.Unlock()
	e.dir.Close()
	deadline := time.Now().Add(cgroupEmptyTimeout)
	if populated(e.path) {
		e.kill()
		for populated(e.path) && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for unix.Rmdir(e.path) == unix.EBUSY && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}
