// Package deb tests the Debian package of mgmt (make deb) in a test host:
// install, service, reload, upgrade, removal and purge.
package deb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// buildDeb builds a package of bin with packaging/debian/build.sh.
func buildDeb(t *testing.T, bin, gendocs, version string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../../packaging/debian/build.sh", bin, version, out)
	// gzip -1: the test needs a package, not a small one.
	cmd.Env = append(os.Environ(), "DEB_COMPRESS=gzip", "DEB_COMPRESS_LEVEL=1",
		"DEB_MAINTAINER=mgmt tests <mgmt-tests@mgmt.example.org>", "GENDOCS="+gendocs)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh %s: %v\n%s", version, err, stderr.String())
	}
	return strings.TrimSpace(string(b))
}

// buildMgmt builds a stripped binary, as make deb does (which also makes
// it PIE with full RELRO: lintian warnings, not errors, and a build of the
// whole tree again, too long for this test).
func buildMgmt(t *testing.T, tags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "mgmt")
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", out}
	for _, tag := range tags {
		args = append(args, "-tags", tag)
	}
	cmd := exec.Command("go", append(args, testhost.MgmtPackage)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// lintianErrors runs lintian on a .deb and returns its error lines
// (lintian exits 1 when there are some, 2 when it could not check).
func lintianErrors(t *testing.T, deb string) []string {
	t.Helper()
	out, err := exec.Command("lintian", "--fail-on", "error", "--tag-display-limit", "0", deb).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("lintian %s: %v\n%s", deb, err, out)
	}
	var errs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") {
			errs = append(errs, l)
		}
	}
	if err != nil && len(errs) == 0 {
		t.Fatalf("lintian failed with no error listed:\n%s", out)
	}
	return errs
}

// A graph that writes where a root agent must be able to write, and a
// command that needs what most systemd sandboxing takes away. Each line
// fails under one directive the unit must not have (docs/operations.md).
const hardeningGraph = `graph: deb-test
resources:
  file:
  - name: example
    path: /var/lib/mgmt/example.txt
    content: "mgmt is running /etc/mgmt/graph.yaml\n"
  - name: etc # ProtectSystem=full or strict
    path: /etc/mgmt-deb-test
    content: "etc\n"
  - name: usr # ProtectSystem=yes
    path: /usr/local/share/mgmt-deb-test
    content: "usr\n"
  - name: home # ProtectHome=yes or read-only
    path: /root/mgmt-deb-test
    content: "home\n"
  - name: tmp # PrivateTmp=yes: written where no one else sees it
    path: /tmp/mgmt-deb-test
    content: "tmp\n"
  exec:
  - name: setuid # RestrictSUIDSGID=yes
    cmd: install -m 4755 /bin/true /usr/local/bin/mgmt-deb-suid
    creates: /usr/local/bin/mgmt-deb-suid
  - name: setgid-tool # NoNewPrivileges=yes: chage is setgid shadow
    user: nobody
    shell: /bin/sh
    cmd: chage -l nobody >/tmp/mgmt-deb-chage.new && mv /tmp/mgmt-deb-chage.new /tmp/mgmt-deb-chage
`

// The files hardeningGraph leaves on the overlay root: the admin's, which
// purge keeps (/tmp is a mount of its own, not listed).
var graphLeftovers = []string{
	"/etc/mgmt-deb-test",
	"/usr/local/bin/mgmt-deb-suid",
	"/usr/local/share/mgmt-deb-test",
}

func TestPackage(t *testing.T) {
	testhost.RequireTools(t, "dpkg-deb", "dpkg-shlibdeps", "lintian", "gzip")
	bin := buildMgmt(t)
	gendocs := buildMgmt(t, "mgmt_gendocs") // the man pages' generator, as make deb builds it
	deb1 := buildDeb(t, bin, gendocs, "0.1.0~test1")
	deb2 := buildDeb(t, bin, gendocs, "0.1.0~test2")
	if list, err := exec.Command("dpkg-deb", "-c", deb1).Output(); err != nil {
		t.Fatalf("dpkg-deb -c: %v", err)
	} else {
		for _, page := range []string{"usr/share/man/man1/mgmt.1.gz", "usr/share/man/man1/mgmt-run.1.gz", "usr/share/man/man1/mgmt-deploy.1.gz"} {
			if !strings.Contains(string(list), page) {
				t.Errorf("the package lacks %s:\n%s", page, list)
			}
		}
	}
	if errs := lintianErrors(t, deb1); len(errs) > 0 {
		t.Errorf("lintian errors:\n%s", strings.Join(errs, "\n"))
	}

	h := testhost.StartT(t, testhost.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(argv ...string) string {
		t.Helper()
		out, err := h.Run(ctx, argv...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	apt := func(args ...string) string {
		t.Helper()
		return run(append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-q"}, args...)...)
	}
	prop := func(p string) string {
		t.Helper()
		return strings.TrimSpace(run("systemctl", "show", "-P", p, "mgmt.service"))
	}
	journal := func() string {
		st, _ := h.Run(ctx, "systemctl", "status", "--no-pager", "mgmt.service")
		out, _ := h.Run(ctx, "journalctl", "-b", "--no-pager", "-u", "mgmt.service")
		return string(st) + "\n" + string(out)
	}
	// The image's policy-rc.d forbids starting services (as on build
	// machines); a real server has none.
	if err := h.Remove("/usr/sbin/policy-rc.d"); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, d := range []string{deb1, deb2} {
		if err := h.CopyIn(d, "/root/"+filepath.Base(d)); err != nil {
			t.Fatal(err)
		}
	}
	before := listFiles(t, run)

	// Install: enabled, started, the example graph converged.
	apt("install", "/root/"+filepath.Base(deb1))
	example := func() bool {
		b, err := h.ReadFile("/var/lib/mgmt/example.txt")
		return err == nil && string(b) == "mgmt is running /etc/mgmt/graph.yaml\n"
	}
	wait.Until(t, 60*time.Second, example, func() string { return "the example graph was not applied:\n" + journal() })
	if s := prop("ActiveState"); s != "active" {
		t.Fatalf("mgmt.service %s after install:\n%s", s, journal())
	}
	if s := prop("UnitFileState"); s != "enabled" {
		t.Errorf("mgmt.service is %s after install, want enabled", s)
	}
	// The resource as a journal field of its own.
	wait.Until(t, 10*time.Second, func() bool {
		out, _ := h.Run(ctx, "journalctl", "-b", "-o", "json", "RES=file[example]")
		for _, l := range strings.Split(string(out), "\n") {
			var e struct {
				Message string `json:"MESSAGE"`
				Ident   string `json:"SYSLOG_IDENTIFIER"`
				Unit    string `json:"_SYSTEMD_UNIT"`
			}
			if json.Unmarshal([]byte(l), &e) == nil && strings.Contains(e.Message, "res=file[example]") &&
				e.Unit == "mgmt.service" && e.Ident == "mgmt" {
				return true
			}
		}
		return false
	}, func() string { return "no journal entry with RES=file[example]:\n" + journal() })

	// The admin changes both conffiles: no file watching (so that only
	// a reload can bring the next graph in), and the hardening graph.
	if err := h.WriteFile("/etc/default/mgmt", []byte("MGMT_ARGS=\"--file /etc/mgmt/graph.yaml --no-watch\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile("/etc/mgmt/graph.yaml", []byte(hardeningGraph), 0o644); err != nil {
		t.Fatal(err)
	}
	run("systemctl", "restart", "mgmt.service")
	checkHardening(t, h, journal)

	// Reload: with --no-watch, only SIGHUP reads the changed graph.
	pid := prop("MainPID")
	reloaded := strings.Replace(hardeningGraph, "content: \"etc\\n\"", "content: \"reloaded\\n\"", 1)
	if err := h.WriteFile("/etc/mgmt/graph.yaml", []byte(reloaded), 0o644); err != nil {
		t.Fatal(err)
	}
	run("systemctl", "reload", "mgmt.service")
	wait.Until(t, 60*time.Second, func() bool {
		b, _ := h.ReadFile("/etc/mgmt-deb-test")
		return string(b) == "reloaded\n"
	}, func() string { return "the reloaded graph was not applied:\n" + journal() })
	if p := prop("MainPID"); p != pid {
		t.Errorf("reload restarted the agent: PID %s, then %s", pid, p)
	}

	// Upgrade: changed conffiles kept, the service restarted (new PID).
	apt("install", "/root/"+filepath.Base(deb2))
	if v := run("dpkg-query", "-W", "-f", "${Version}", "mgmt"); v != "0.1.0~test2" {
		t.Fatalf("version %q after the upgrade", v)
	}
	if b, _ := h.ReadFile("/etc/mgmt/graph.yaml"); string(b) != reloaded {
		t.Errorf("the upgrade replaced the changed graph.yaml:\n%s", b)
	}
	if b, _ := h.ReadFile("/etc/default/mgmt"); !strings.Contains(string(b), "--no-watch") {
		t.Errorf("the upgrade replaced the changed /etc/default/mgmt:\n%s", b)
	}
	wait.Until(t, 15*time.Second, func() bool {
		p := prop("MainPID")
		return p != pid && p != "0" && prop("ActiveState") == "active"
	}, func() string { return fmt.Sprintf("not restarted by the upgrade (PID %s before):\n%s", pid, journal()) })

	// Remove: stopped, the unit's files gone, the conffiles kept.
	apt("remove", "mgmt")
	if s := prop("ActiveState"); s != "inactive" {
		t.Errorf("mgmt.service %s after remove", s)
	}
	if out, err := h.Run(ctx, "pgrep", "-x", "mgmt"); err == nil {
		t.Errorf("mgmt still running after remove: %s", out)
	}
	if _, err := h.ReadFile("/etc/mgmt/graph.yaml"); err != nil {
		t.Errorf("remove deleted a conffile: %v", err)
	}

	// Purge: back to the files there were before install, but for what
	// the admin's graph wrote.
	apt("purge", "mgmt")
	after := listFiles(t, run)
	want := slices.Clone(before)
	for _, f := range graphLeftovers {
		want = append(want, f)
	}
	slices.Sort(want)
	if added, removed := diff(want, after); len(added)+len(removed) > 0 {
		t.Errorf("purge left %q and removed %q", added, removed)
	}
}

// checkHardening waits for every resource of hardeningGraph to be applied
// by the service, each the proof that a sandboxing directive is absent.
func checkHardening(t *testing.T, h *testhost.Host, journal func() string) {
	t.Helper()
	want := map[string]string{
		"/etc/mgmt-deb-test":             "etc\n",
		"/usr/local/share/mgmt-deb-test": "usr\n",
		"/root/mgmt-deb-test":            "home\n",
		"/tmp/mgmt-deb-test":             "tmp\n", // the host's /tmp, seen by all
	}
	for path, content := range want {
		wait.Until(t, 60*time.Second, func() bool {
			b, err := h.ReadFile(path)
			return err == nil && string(b) == content
		}, func() string { return path + " not written by the service:\n" + journal() })
	}
	wait.Until(t, 60*time.Second, func() bool {
		b, _ := h.ReadFile("/tmp/mgmt-deb-chage")
		return strings.Contains(string(b), "Password expires")
	}, func() string { return "chage as nobody (setgid shadow) failed under the service:\n" + journal() })
	// install(1) writes the file 0600 first, then sets the mode: wait.
	wait.Until(t, 60*time.Second, func() bool {
		st, err := os.Stat(h.Root() + "/usr/local/bin/mgmt-deb-suid")
		return err == nil && st.Mode()&os.ModeSetuid != 0
	}, func() string { return "setuid file not made by the service:\n" + journal() })
}

// listFiles lists where a package and its scripts write: /etc, /usr
// (/lib is a link to it), /var/lib, /opt, /srv; but for the package
// manager's own state and what the host's own services write there. Not
// /root, /work, /var/tmp...: the host's lower layer is the live root of
// this machine, where other work goes on during the test.
func listFiles(t *testing.T, run func(...string) string) []string {
	t.Helper()
	out := run("find", "/etc", "/usr", "/var/lib", "/opt", "/srv", "-xdev",
		"(", "-path", "/var/lib/dpkg", "-o", "-path", "/var/lib/apt", "-o", "-path", "/var/lib/PackageKit",
		"-o", "-path", "/var/lib/systemd/linger", ")", "-prune", "-o", "-print")
	files := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(files)
	return files
}

// diff returns what b has that a has not, and what a has that b has not.
func diff(a, b []string) (added, removed []string) {
	for _, f := range b {
		if _, ok := slices.BinarySearch(a, f); !ok {
			added = append(added, f)
		}
	}
	for _, f := range a {
		if _, ok := slices.BinarySearch(b, f); !ok {
			removed = append(removed, f)
		}
	}
	return added, removed
}
