package testhost

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Memory is what a host costs the real machine, in bytes.
type Memory struct {
	Procs int    // processes in the host's cgroup
	RSS   uint64 // resident memory of those processes (shared pages counted in each)
	PSS   uint64 // proportional share: shared pages divided among their users
	Tmpfs uint64 // used in the host's tmpfs: writable layer, /run and /tmp
}

func (m Memory) String() string {
	const mb = 1 << 20
	return fmt.Sprintf("%d processes, RSS %.1f MB, PSS %.1f MB, tmpfs %.1f MB",
		m.Procs, float64(m.RSS)/mb, float64(m.PSS)/mb, float64(m.Tmpfs)/mb)
}

// Memory measures the host's processes and tmpfs usage.
func (h *Host) Memory() (Memory, error) {
	if !h.running() {
		return Memory{}, ErrNotRunning
	}
	var m Memory
	for _, pid := range procsIn(h.cg.path) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil || len(b) == 0 {
			continue // exited, or a kernel thread
		}
		m.Procs++
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "Rss:":
				m.RSS += kb << 10
			case "Pss:":
				m.PSS += kb << 10
			}
		}
	}
	// statfs on the overlay reports its upper filesystem: the tmpfs.
	for _, p := range []string{"", "/run", "/tmp"} {
		var st unix.Statfs_t
		if err := unix.Statfs(h.Root()+p, &st); err != nil {
			return m, fmt.Errorf("testhost: statfs %s: %w", p, err)
		}
		m.Tmpfs += (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	return m, nil
}
