// Package testrepo builds, at test time, a local apt repository of tiny
// Debian packages with dpkg-deb and dpkg-scanpackages, so that package tests
// need no network and give the same result every time.
package testrepo

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
)

// The default packages (see Default).
const (
	// PkgA ships /usr/share/mgmt-test-a/README.
	PkgA = "mgmt-test-a"
	// PkgB depends on PkgA and ships /usr/share/mgmt-test-b/README.
	PkgB = "mgmt-test-b"
	// PkgC ships the conffile /etc/mgmt-test-c.conf and
	// /usr/share/mgmt-test-c/data.
	PkgC = "mgmt-test-c"
	// PkgSvc ships the unit SvcUnit, which runs `sleep infinity`.
	PkgSvc = "mgmt-test-svc"
	// PkgVer exists in versions VerOld and VerNew; its file
	// /usr/share/mgmt-test-ver/version holds the version.
	PkgVer = "mgmt-test-ver"

	SvcUnit = "mgmt-test-svc.service"
	VerOld  = "1.0"
	VerNew  = "2.0"
)

// File is one file of a package.
type File struct {
	Path     string // absolute, e.g. /etc/mgmt-test-c.conf
	Data     string
	Mode     fs.FileMode // default 0644
	Conffile bool        // listed in DEBIAN/conffiles (must be under /etc)
}

// Package describes a binary package to build.
type Package struct {
	Name        string
	Version     string
	Depends     []string // e.g. "mgmt-test-a" or "mgmt-test-a (>= 1.0)"
	Description string
	Files       []File
}

// Filename is the .deb's name in the repository.
func (p Package) Filename() string {
	return fmt.Sprintf("%s_%s_all.deb", p.Name, p.Version)
}

// Default returns the standard set of test packages: PkgA, PkgB (depends
// on PkgA), PkgC (files in /etc and /usr/share), PkgSvc (a systemd unit)
// and PkgVer in two versions.
func Default() []Package {
	ver := func(v string) Package {
		return Package{
			Name: PkgVer, Version: v, Description: "mgmt test package in two versions",
			Files: []File{{Path: "/usr/share/mgmt-test-ver/version", Data: v + "\n"}},
		}
	}
	return []Package{
		{
			Name: PkgA, Version: "1.0", Description: "mgmt test package A",
			Files: []File{{Path: "/usr/share/mgmt-test-a/README", Data: "mgmt test package A\n"}},
		},
		{
			Name: PkgB, Version: "1.0", Depends: []string{PkgA}, Description: "mgmt test package B, depends on A",
			Files: []File{{Path: "/usr/share/mgmt-test-b/README", Data: "mgmt test package B\n"}},
		},
		{
			Name: PkgC, Version: "1.0", Description: "mgmt test package C, with a conffile",
			Files: []File{
				{Path: "/etc/mgmt-test-c.conf", Data: "# mgmt test package C\nkey = value\n", Conffile: true},
				{Path: "/usr/share/mgmt-test-c/data", Data: "mgmt test package C data\n"},
			},
		},
		{
			Name: PkgSvc, Version: "1.0", Description: "mgmt test package with a systemd service",
			Files: []File{{Path: "/lib/systemd/system/" + SvcUnit, Data: svcUnitText}},
		},
		ver(VerOld),
		ver(VerNew),
	}
}

const svcUnitText = `[Unit]
Description=mgmt test service (sleeps)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`

// Repo is a built repository: a flat apt repository ("deb [trusted=yes]
// file:DIR ./") with the .debs and their Packages index.
type Repo struct {
	Dir      string
	Packages []Package
}

// Build writes pkgs as .debs into dir (which must exist) and indexes them.
// It needs dpkg-deb and dpkg-scanpackages (package dpkg-dev).
func Build(ctx context.Context, dir string, pkgs []Package) (*Repo, error) {
	work, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	defer os.RemoveAll(work)
	for _, p := range pkgs {
		if err := buildDeb(ctx, work, dir, p); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, "dpkg-scanpackages", "--multiversion", ".", "/dev/null")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testrepo: dpkg-scanpackages: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := os.WriteFile(filepath.Join(dir, "Packages"), stdout.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("testrepo: %w", err)
	}
	return &Repo{Dir: dir, Packages: slices.Clone(pkgs)}, nil
}

func buildDeb(ctx context.Context, work, out string, p Package) error {
	if p.Name == "" || p.Version == "" {
		return fmt.Errorf("testrepo: package %q needs a name and a version", p.Name)
	}
	root := filepath.Join(work, p.Name+"_"+p.Version)
	if err := os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755); err != nil {
		return fmt.Errorf("testrepo: %w", err)
	}
	var conffiles []string
	for _, f := range p.Files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("testrepo: %s: file path %q is not absolute", p.Name, f.Path)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		dst := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("testrepo: %w", err)
		}
		if err := os.WriteFile(dst, []byte(f.Data), mode); err != nil {
			return fmt.Errorf("testrepo: %w", err)
		}
		if err := os.Chmod(dst, mode); err != nil { // umask
			return fmt.Errorf("testrepo: %w", err)
		}
		if f.Conffile {
			conffiles = append(conffiles, f.Path)
		}
	}
	var ctl strings.Builder
	fmt.Fprintf(&ctl, "Package: %s\nVersion: %s\nArchitecture: all\n", p.Name, p.Version)
	fmt.Fprintf(&ctl, "Maintainer: mgmt tests <mgmt-tests@localhost>\nSection: misc\nPriority: optional\n")
	if len(p.Depends) > 0 {
		fmt.Fprintf(&ctl, "Depends: %s\n", strings.Join(p.Depends, ", "))
	}
	desc := p.Description
	if desc == "" {
		desc = "mgmt test package " + p.Name
	}
	fmt.Fprintf(&ctl, "Description: %s\n built by test/testrepo for mgmt's tests.\n", desc)
	if err := os.WriteFile(filepath.Join(root, "DEBIAN", "control"), []byte(ctl.String()), 0o644); err != nil {
		return fmt.Errorf("testrepo: %w", err)
	}
	if len(conffiles) > 0 {
		data := strings.Join(conffiles, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(root, "DEBIAN", "conffiles"), []byte(data), 0o644); err != nil {
			return fmt.Errorf("testrepo: %w", err)
		}
	}
	deb := filepath.Join(out, p.Filename())
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", root, deb)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testrepo: dpkg-deb --build %s: %w: %s", p.Name, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// BuildT builds the Default packages into a temporary directory of the
// test. It skips the test when dpkg-deb or dpkg-scanpackages is missing,
// or fails it when MGMT_REQUIRE_TESTHOSTS=1.
func BuildT(tb testing.TB) *Repo {
	tb.Helper()
	for _, tool := range []string{"dpkg-deb", "dpkg-scanpackages"} {
		if _, err := exec.LookPath(tool); err != nil {
			skip.OrFail(tb, "testrepo: missing %s (test/setup-deps.sh installs it)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Build(ctx, tb.TempDir(), Default())
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
