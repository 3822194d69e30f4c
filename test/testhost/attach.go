package testhost

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// stateFile, in a host's state directory, describes the running host so
// that another process can Attach to it (the CLI's exec and down).
const stateFile = "state.json"

type state struct {
	Name    string    `json:"name"`
	PID     int       `json:"pid"`
	PidNS   string    `json:"pidns"` // readlink of /proc/PID/ns/pid: guards against PID reuse
	Cgroup  string    `json:"cgroup"`
	CgRel   string    `json:"cgroup_rel"`
	NetNS   string    `json:"netns,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Started time.Time `json:"started"`
}

func (h *Host) writeState() error {
	pidns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.pid))
	if err != nil {
		return fmt.Errorf("testhost: %w", err)
	}
	b, err := json.MarshalIndent(state{
		Name: h.name, PID: h.pid, PidNS: pidns, Cgroup: h.cg.path, CgRel: h.cg.rel,
		NetNS: h.netns, Addr: h.addr, Started: h.started,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(h.dir, stateFile), b, 0o644)
}

// ErrGone is returned by Attach when the host described by a state
// directory no longer runs.
var ErrGone = errors.New("testhost: host is gone")

// Attach returns the running host whose state directory is dir (a host
// started, typically with Options.Detach, by another process). Stop works
// on it as on one this process started; the state directory is left for
// the caller to remove. When the host is gone, the error wraps ErrGone and
// the returned Host's Stop only removes what it left (its cgroup).
func Attach(dir string, logger *slog.Logger) (*Host, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("testhost: attach: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("testhost: attach: %s: %w", stateFile, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	h := &Host{
		name: st.Name, pid: st.PID, dir: dir, netns: st.NetNS, addr: st.Addr,
		logger: logger.With("host", st.Name), started: st.Started,
		exited: make(chan struct{}), execs: map[*execCgroup]struct{}{},
		cg: &cgroup{path: st.Cgroup, rel: st.CgRel},
	}
	// Open the pidfd first, then check the namespace: if the PID was
	// reused, the pidfd refers to another process and the check fails.
	pidfd, err := unix.PidfdOpen(st.PID, 0)
	if err != nil {
		close(h.exited)
		return h, fmt.Errorf("%w: PID %d: %w", ErrGone, st.PID, err)
	}
	if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", st.PID)); err != nil || ns != st.PidNS {
		unix.Close(pidfd)
		close(h.exited)
		return h, fmt.Errorf("%w: PID %d is no longer its PID 1", ErrGone, st.PID)
	}
	if h.cg.dir, err = os.Open(st.Cgroup); err != nil {
		unix.Close(pidfd)
		return nil, fmt.Errorf("testhost: attach: cgroup: %w", err)
	}
	if h.proc, err = os.FindProcess(st.PID); err != nil {
		unix.Close(pidfd)
		h.cg.dir.Close()
		return nil, fmt.Errorf("testhost: attach: %w", err)
	}
	// Not our child: learn of its exit by polling its pidfd.
	go func() {
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if n, err := unix.Poll(fds, -1); n > 0 || (err != nil && err != unix.EINTR) {
				break
			}
		}
		close(h.exited)
	}()
	return h, nil
}
