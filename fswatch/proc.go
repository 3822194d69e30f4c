package fswatch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// CountInotify reports what the kernel says this process holds: how many
// inotify instances are open and how many watches they have in all. It reads
// /proc/self/fd and /proc/self/fdinfo.
func CountInotify() (instances, watches int, err error) {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0, fmt.Errorf("fswatch: %w", err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || link != "anon_inode:inotify" {
			continue // closed since it was listed, or not inotify
		}
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if err != nil {
			continue
		}
		instances++
		sc := bufio.NewScanner(bytes.NewReader(info))
		for sc.Scan() {
			if bytes.HasPrefix(sc.Bytes(), []byte("inotify wd:")) {
				watches++
			}
		}
	}
	return instances, watches, nil
}
