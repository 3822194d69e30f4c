package testhost

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// AptRepoDir is where Options.AptRepo is copied inside a host.
const AptRepoDir = "/srv/mgmt-testrepo"

// aptSourcesFile is the host's only apt source when Options.AptRepo is set.
const aptSourcesFile = "/etc/apt/sources.list.d/mgmt-testrepo.list"

// useAptRepo copies the local repository into the host and makes it the
// host's only apt source: the real machine's sources and package lists are
// removed inside the host's overlay (whiteouts in its tmpfs layer).
func (h *Host) useAptRepo(repo string) error {
	if _, err := os.Stat(filepath.Join(repo, "Packages")); err != nil {
		return fmt.Errorf("testhost: AptRepo %s is not an indexed repository: %w", repo, err)
	}
	if err := h.CopyIn(repo, AptRepoDir); err != nil {
		return fmt.Errorf("testhost: copying the apt repository in: %w", err)
	}
	// apt reads the repository as an unprivileged user: a 0700 temporary
	// directory copied with its mode would be unreadable.
	if err := os.Chmod(filepath.Join(h.Root(), AptRepoDir), 0o755); err != nil {
		return fmt.Errorf("testhost: apt repository mode: %w", err)
	}
	for _, dir := range []string{"/etc/apt/sources.list.d", "/var/lib/apt/lists"} {
		if err := h.removeFilesIn(dir); err != nil {
			return err
		}
	}
	if err := h.Remove("/etc/apt/sources.list"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	line := "deb [trusted=yes] file:" + AptRepoDir + " ./\n"
	return h.WriteFile(aptSourcesFile, []byte(line), 0o644)
}

// removeFilesIn removes the files (not the subdirectories) of a directory
// inside the host.
func (h *Host) removeFilesIn(dir string) error {
	d, err := h.inRoot(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("testhost: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if err := h.Remove(dir + "/" + e.Name()); err != nil {
			return err
		}
	}
	return nil
}
