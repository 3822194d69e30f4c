package testhost

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// The planted secrets of TestDryRunIsDry: a user's password hash and the
// content of a sensitive file. Neither may appear in any output.
const (
	dryHash   = "$6$drysalt$PLANTEDHASHx9QwErTyUiOpAsDfGhJkLzXcVbNm0123456789abcdefghijklmnopqrstuvw"
	drySecret = "PLANTED-SECRET-7f3a"
)

// drySetup runs inside the host before anything is measured: the state the
// graph would change.
const drySetup = `set -e
mkdir -p /srv/dry
printf 'hello\nthere\n' > /srv/dry/motd
printf 'data\n' > /srv/dry/script; chmod 0600 /srv/dry/script
printf 'old-token=a1\n' > /srv/dry/secret; chmod 0600 /srv/dry/secret
printf '#Port 22\nPermitRootLogin yes\n' > /srv/dry/sshd.conf
unit() { printf '[Unit]\nDescription=%s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' "$1" > /etc/systemd/system/$1.service; }
unit dry-start; unit dry-enable; unit dry-stop
systemctl daemon-reload
systemctl start dry-stop.service
useradd -m -s /bin/sh drykeys
apt-get install -y -q ` + testrepo.PkgC + ` >/dev/null 2>&1
# /proc/sys is read-only in a host; its network part (the host's own
# network namespace's, since /proc/sys/net shows the reader's) made
# writable for the sysctl resource.
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
echo 0 > /proc/sys/net/ipv4/ip_forward
`

const dryKey = "AAAAC3NzaC1lZDI1NTE5AAAAIEUAEPCQH6szxY4XAElio95l8K+ZdFxc30hfnSDhjKcE"

const dryGraph = `graph: dry
resources:
  file:
  - name: motd
    path: /srv/dry/motd
    content: "hello\nworld\n"
  - name: new
    path: /srv/dry/new.conf
    content: "created\n"
    mode: "0644"
  - name: script
    path: /srv/dry/script
    mode: "0755"
  - name: secret
    path: /srv/dry/secret
    content: "token=` + drySecret + `\n"
    mode: "0600"
    meta: {sensitive: true}
  pkg:
  - name: ` + testrepo.PkgA + `
    allowunsupported: true
  - name: ` + testrepo.PkgC + `
    state: uninstalled
  svc:
  - name: dry-start
    state: running
  - name: dry-enable
    startup: enabled
  - name: dry-stop
    state: stopped
  exec:
  - name: marker1
    cmd: touch /srv/dry/marker1
    creates: /srv/dry/marker1
  - name: marker2
    shell: /bin/sh
    cmd: echo ran > /srv/dry/marker2
    ifcmd: test ! -e /srv/dry/marker2
  group:
  - name: drygroup
    gid: 2101
  user:
  - name: dryuser
    uid: 2101
    group: drygroup
    shell: /bin/sh
    password: "` + dryHash + `"
  line:
  - name: port
    path: /srv/dry/sshd.conf
    line: Port 2222
    match: ^#?Port\s
  sysctl:
  - name: net.ipv4.ip_forward
    value: "1"
    persist: true
  mount:
  - name: /mnt/dry
    device: tmpfs
    type: tmpfs
    options: nosuid,nodev
  hostname:
  - name: web
    static: dry-web1
  ssh_authorized_key:
  - name: drykeys
    user: drykeys
    type: ssh-ed25519
    key: ` + dryKey + `
    comment: dry@test
edges:
- {from: {kind: file, name: motd}, to: {kind: svc, name: dry-start}, notify: true}
`

// dryWant is, per resource of dryGraph, the properties a run reports.
var dryWant = map[string][]string{
	"file[motd]":                  {"content"},
	"file[new]":                   {"state", "content"},
	"file[script]":                {"mode"},
	"file[secret]":                {"content"},
	"pkg[" + testrepo.PkgA + "]":  {"package " + testrepo.PkgA},
	"pkg[" + testrepo.PkgC + "]":  {"package " + testrepo.PkgC},
	"svc[dry-start]":              {"state", "refresh"},
	"svc[dry-enable]":             {"startup"},
	"svc[dry-stop]":               {"state"},
	"exec[marker1]":               {"cmd"},
	"exec[marker2]":               {"cmd"},
	"group[drygroup]":             {"state"},
	"user[dryuser]":               {"state", "password"},
	"line[port]":                  {"line"},
	"sysctl[net.ipv4.ip_forward]": {"value", "persist"},
	"mount[/mnt/dry]":             {"fstab", "state"},
	"hostname[web]":               {"static"},
	"ssh_authorized_key[drykeys]": {"ssh directory", "state"},
}

// dryFiles are every file the graph (or a command it runs) would touch.
var dryFiles = []string{
	"/srv/dry/motd", "/srv/dry/new.conf", "/srv/dry/script", "/srv/dry/secret",
	"/srv/dry/sshd.conf", "/srv/dry/marker1", "/srv/dry/marker2",
	"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/fstab",
	"/etc/hostname", "/etc/sysctl.d/90-mgmt-net.ipv4.ip_forward.conf",
	"/home/drykeys/.ssh", "/home/drykeys/.ssh/authorized_keys",
	"/etc/systemd/system/multi-user.target.wants/dry-enable.service",
}

// drySnapshot is what a noop run must leave as it is, one line per fact.
func drySnapshot(t *testing.T, h *Host) string {
	t.Helper()
	script := `for f in "$@"; do
  if [ -d "$f" ]; then echo "$f dir $(stat -c '%a %U:%G' "$f")"
  elif [ -e "$f" ]; then echo "$f $(stat -c '%a %U:%G' "$f") $(sha256sum < "$f" | cut -c1-64)"
  else echo "$f absent"; fi
done
for u in dry-start dry-enable dry-stop; do
  echo "$u.service $(systemctl is-enabled $u.service || true) $(systemctl is-active $u.service || true)"
done
echo "ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
echo "hostname $(hostname) static=$(hostnamectl --static)"
echo "mount /mnt/dry: $(grep -c ' /mnt/dry ' /proc/self/mountinfo || true)"
echo "passwd dryuser: $(getent passwd dryuser || true)"
dpkg-query -W -f '${Package} ${Status} ${Version}\n'
`
	return mustRun(t, h, append([]string{"bash", "-c", script, "snapshot"}, dryFiles...)...)
}

// dryReport is the part of mgmt's --report the test reads.
type dryReport struct {
	Noop      bool `json:"noop"`
	Changed   int  `json:"changed"`
	Pending   int  `json:"pending"`
	Failed    int  `json:"failed"`
	Resources []struct {
		Res        string          `json:"res"`
		Changed    bool            `json:"changed"`
		Pending    bool            `json:"pending"`
		Failed     bool            `json:"failed"`
		Properties []engine.Change `json:"properties"`
	} `json:"resources"`
}

// dryRun runs mgmt inside the host once, to convergence, and returns its
// standard output, standard error, exit status and report.
func dryRun(t *testing.T, h *Host, mgmt string, args ...string) (stdout, stderr string, code int, rep dryReport, raw []byte) {
	t.Helper()
	const reportPath = "/root/dry-report.json"
	h.Remove(reportPath)
	argv := append([]string{mgmt, "run", "--file", "/root/dry.yaml", "--no-watch", "--converged-timeout=0", "--detailed-exitcodes", "--report", reportPath}, args...)
	cmd := h.Command(testCtx(t, time.Minute), argv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("mgmt %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	t.Logf("mgmt run %s: exit %d in %v\n%s%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), out.String(), errb.String())
	raw, err = h.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("mgmt %s wrote no report: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, raw)
	}
	return out.String(), errb.String(), code, rep, raw
}

// checkReported checks that every resource of dryGraph is in the report
// with the properties dryWant names, each once, pending (noop) or changed.
func checkReported(t *testing.T, rep dryReport, noop bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rep.Resources {
		want, ok := dryWant[r.Res]
		if r.Res == "svc[dry-start]" && !noop {
			// Started by this check, it is not restarted on the
			// refresh the noop run said it would get.
			want = []string{"state"}
		}
		if !ok {
			t.Errorf("report: unexpected resource %s", r.Res)
			continue
		}
		seen[r.Res] = true
		if r.Failed || (noop && (!r.Pending || r.Changed)) || (!noop && (!r.Changed || r.Pending)) {
			t.Errorf("report: %s: changed=%v pending=%v failed=%v, want noop=%v", r.Res, r.Changed, r.Pending, r.Failed, noop)
		}
		var got []string
		for _, c := range r.Properties {
			got = append(got, c.Property)
			if c.From == "" && c.To == "" && c.Why == "" {
				t.Errorf("report: %s: %s says nothing: %+v", r.Res, c.Property, c)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("report: %s reports %q, want %q", r.Res, got, want)
		}
	}
	for res := range dryWant {
		if !seen[res] {
			t.Errorf("report: %s is missing", res)
		}
	}
}

// changeLine is one change logged by the engine ("would change" or
// "changed").
var changeLine = regexp.MustCompile(`msg="?(would change|changed)[^ ]*"? res=(\S+) property=("[^"]*"|\S+)`)

// checkLoggedOnce checks that each change is logged once, as the engine
// logs it, not also by the kind.
func checkLoggedOnce(t *testing.T, stderr string) {
	t.Helper()
	n := map[string]int{}
	for _, m := range changeLine.FindAllStringSubmatch(stderr, -1) {
		n[m[2]+" "+m[3]]++
	}
	for k, c := range n {
		if c != 1 {
			t.Errorf("%s is logged %d times", k, c)
		}
	}
	if strings.Contains(stderr, "(noop)") {
		t.Errorf("a kind logs its own noop line:\n%s", stderr)
	}
}

// checkNoSecret fails if a planted secret is in any output.
func checkNoSecret(t *testing.T, what string, outputs map[string]string) {
	t.Helper()
	for name, s := range outputs {
		for _, secret := range []string{dryHash, "PLANTEDHASH", drySecret} {
			if strings.Contains(s, secret) {
				t.Errorf("%s: the secret %q is in the %s", what, secret, name)
			}
		}
	}
}

// TestDryRunIsDry runs the mgmt binary inside a host with --noop on a graph
// that would change files, packages, services, commands, a user, a group, a
// line, a sysctl, a mount, the hostname and an authorized key: nothing
// changes, exit 4, every pending change is reported with its properties,
// and no secret shows. Then for real: exit 4 and all of it changed; and
// again: exit 0.
func TestDryRunIsDry(t *testing.T) {
	RequireTools(t, "dpkg-deb", "dpkg-scanpackages")
	start := time.Now()
	repo := testrepo.BuildT(t)
	h := StartT(t, Options{AptRepo: repo.Dir, Name: "dry-host"})
	mgmt := InstallMgmt(t, h)
	t.Logf("repository, host and mgmt ready in %v", time.Since(start).Round(time.Millisecond))
	realForward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, h, "bash", "-c", drySetup)
	if err := h.WriteFile("/root/dry.yaml", []byte(dryGraph), 0o644); err != nil {
		t.Fatal(err)
	}

	before := drySnapshot(t, h)
	stdout, stderr, code, rep, raw := dryRun(t, h, mgmt, "--noop")
	if after := drySnapshot(t, h); after != before {
		t.Errorf("--noop changed the host:\n%s", diffLists(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
	if code != 4 {
		t.Errorf("--noop exited %d, want 4 (changes pending)", code)
	}
	if !rep.Noop || rep.Pending != len(dryWant) || rep.Changed != 0 || rep.Failed != 0 {
		t.Errorf("report: noop=%v pending=%d changed=%d failed=%d, want noop, %d pending", rep.Noop, rep.Pending, rep.Changed, rep.Failed, len(dryWant))
	}
	checkReported(t, rep, true)
	checkLoggedOnce(t, stderr)
	checkNoSecret(t, "--noop", map[string]string{"stdout": stdout, "stderr": stderr, "report": string(raw)})
	for _, r := range rep.Resources {
		for _, c := range r.Properties {
			// The password is shown as the fingerprint of the hash, and
			// a user without one has no value to show.
			if r.Res == "user[dryuser]" && c.Property == "password" && (c.From != "" || c.To != shortHash(dryHash) || !c.Sensitive) {
				t.Errorf("report: password %+v, want no from, to %s", c, shortHash(dryHash))
			}
			if r.Res == "file[secret]" && (!c.Sensitive || c.Diff != "") {
				t.Errorf("report: the sensitive file's change is not masked: %+v", c)
			}
		}
	}
	if t.Failed() {
		return
	}

	stdout, stderr, code, rep, raw = dryRun(t, h, mgmt)
	if code != 4 {
		t.Errorf("the real run exited %d, want 4 (changed)", code)
	}
	if rep.Noop || rep.Changed != len(dryWant) || rep.Failed != 0 {
		t.Errorf("report: noop=%v changed=%d failed=%d, want %d changed", rep.Noop, rep.Changed, rep.Failed, len(dryWant))
	}
	checkReported(t, rep, false)
	checkLoggedOnce(t, stderr)
	checkNoSecret(t, "real run", map[string]string{"stdout": stdout, "stderr": stderr, "report": string(raw)})
	checkApplied(t, h)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil || !bytes.Equal(b, realForward) {
		t.Errorf("the machine's own ip_forward changed: %q, was %q (%v)", b, realForward, err)
	}

	_, _, code, rep, _ = dryRun(t, h, mgmt)
	if code != 0 || rep.Changed != 0 || rep.Failed != 0 {
		t.Errorf("the second real run exited %d with %d changed, %d failed, want 0: nothing to do", code, rep.Changed, rep.Failed)
	}
	t.Logf("TestDryRunIsDry: %v in all", time.Since(start).Round(time.Millisecond))
}

// checkApplied checks, inside the host, that the real run made every change.
func checkApplied(t *testing.T, h *Host) {
	t.Helper()
	sum := func(s string) string {
		b := sha256.Sum256([]byte(s))
		return hex.EncodeToString(b[:])
	}
	script := `stat -c '%n %a' /srv/dry/script /srv/dry/new.conf
sha256sum /srv/dry/motd /srv/dry/new.conf /srv/dry/secret | cut -c1-64
cat /srv/dry/marker2; test -e /srv/dry/marker1 && echo marker1
grep -x 'Port 2222' /srv/dry/sshd.conf
for u in dry-start dry-enable dry-stop; do echo "$u $(systemctl is-enabled $u.service || true) $(systemctl is-active $u.service || true)"; done
dpkg-query -W -f '${Package} ${db:Status-Status}\n' ` + testrepo.PkgA + ` ` + testrepo.PkgC + `
getent group drygroup | cut -d: -f1,3
getent passwd dryuser | cut -d: -f1,3,4,7
test "$(getent shadow dryuser | cut -d: -f2)" = "$1" && echo password set
cat /proc/sys/net/ipv4/ip_forward
grep -c 'net.ipv4.ip_forward = 1' /etc/sysctl.d/90-mgmt-net.ipv4.ip_forward.conf
grep ' /mnt/dry ' /proc/self/mountinfo | cut -d' ' -f5,9
grep -c '^tmpfs /mnt/dry tmpfs nosuid,nodev 0 0$' /etc/fstab
hostnamectl --static
cut -d' ' -f1,3 /home/drykeys/.ssh/authorized_keys
`
	want := strings.Join([]string{
		"/srv/dry/script 755", "/srv/dry/new.conf 644",
		sum("hello\nworld\n"), sum("created\n"), sum("token=" + drySecret + "\n"),
		"ran", "marker1", "Port 2222",
		"dry-start disabled active", "dry-enable enabled inactive", "dry-stop disabled inactive",
		testrepo.PkgA + " installed", testrepo.PkgC + " config-files",
		"drygroup:2101", "dryuser:2101:2101:/bin/sh", "password set",
		"1", "1", "/mnt/dry tmpfs", "1", "dry-web1", "ssh-ed25519 dry@test",
	}, "\n") + "\n"
	got, err := h.Run(testCtx(t, 30*time.Second), "bash", "-c", script, "check", dryHash)
	if err != nil || string(got) != want {
		t.Errorf("after the real run (%v):\n%s", err, diffLists(strings.Split(want, "\n"), strings.Split(string(got), "\n")))
	}
}

// shortHash is engine.ShortHash, written out so that the test does not
// trust the code it checks.
func shortHash(s string) string {
	b := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(b[:6])
}
