package user

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/internal/shadow"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

func ptr[T any](v T) *T { return &v }

// Two yescrypt hashes (of "a" and "b"): only their form matters here.
const (
	hashA = "$y$j9T$0TnXRk5bRuQvFd1YeBfvR/$7PjHjHgQmEf.xA3mV4Vz6gJmZzQF8G1FJ1y5cVbAxP3"
	hashB = "$y$j9T$Vc2b1lQm4yH5FZ8d0Y1mQ.$Ck3m0wXGxJ2u7mJv6v2xQ8r6S8yTt5Jw6vZ0kQm9L0A"
)

func run(t *testing.T, stdin string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// state is what the databases say of name: its passwd fields, its
// supplementary groups, and a fingerprint of its password hash.
func state(t *testing.T, name string) string {
	t.Helper()
	u, err := shadow.LookupUser(name)
	if err != nil {
		return "absent"
	}
	groups, err := shadow.GroupsOf(name)
	if err != nil {
		t.Fatal(err)
	}
	hash, _, err := shadow.Password(name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join([]string{u.Name, strconv.Itoa(int(u.UID)), strconv.Itoa(int(u.GID)), u.Comment, u.Home, u.Shell, strings.Join(groups, ","), Fingerprint(hash)}, ":")
}

func testUser() *User {
	r := &User{UID: ptr(uint32(4100)), Group: "mgmt-prim", Groups: []string{"mgmt-g2", "mgmt-g3"},
		HomeDir: "/home/mgmt-u", Shell: "/bin/bash", Comment: "Test User", Password: ptr(hashA)}
	r.SetName("mgmt-u")
	return r
}

// The conformance suite, inside a test host, with the real useradd,
// usermod, userdel and chpasswd: every managed property drifted behind the
// resource's back is seen through inotify and repaired.
func TestConformance(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const name = "mgmt-u"
	run(t, "", "groupadd", "-g", "4200", "mgmt-prim")
	run(t, "", "groupadd", "mgmt-g2")
	run(t, "", "groupadd", "mgmt-g3")
	run(t, "", "groupadd", "mgmt-other")
	restest.Run(t, restest.Case{
		Kind:  "user",
		Res:   func(t *testing.T) engine.Res { return testUser() },
		State: func(t *testing.T) string { return state(t, name) },
		Drifts: []restest.Drift{
			{Name: "usermod -s", Do: func(t *testing.T) { run(t, "", "usermod", "-s", "/bin/sh", name) }},
			{Name: "usermod -u", Do: func(t *testing.T) { run(t, "", "usermod", "-u", "4101", name) }},
			{Name: "usermod -g", Do: func(t *testing.T) { run(t, "", "usermod", "-g", "mgmt-other", name) }},
			{Name: "usermod -c -d", Do: func(t *testing.T) { run(t, "", "usermod", "-c", "x", "-d", "/srv/x", name) }},
			{Name: "gpasswd -d", Do: func(t *testing.T) { run(t, "", "gpasswd", "-d", name, "mgmt-g2") }},
			{Name: "usermod -aG", Do: func(t *testing.T) { run(t, "", "usermod", "-aG", "mgmt-other", name) }},
			{Name: "chpasswd -e", Do: func(t *testing.T) { run(t, name+":"+hashB+"\n", "chpasswd", "-e") }},
			{Name: "userdel", Do: func(t *testing.T) { run(t, "", "userdel", name) }},
		},
	})
	want := "mgmt-u:4100:4200:Test User:/home/mgmt-u:/bin/bash:mgmt-g2,mgmt-g3:" + Fingerprint(hashA)
	if got := state(t, name); got != want {
		t.Errorf("at the end:\n%s\nwant\n%s", got, want)
	}
}

// An absent user is removed, and again when useradd brings it back.
func TestConformanceAbsent(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const name = "mgmt-gone"
	run(t, "", "useradd", "-M", name)
	restest.Run(t, restest.Case{
		Kind: "user",
		Res: func(t *testing.T) engine.Res {
			r := &User{State: StateAbsent}
			r.SetName(name)
			return r
		},
		State:  func(t *testing.T) string { return state(t, name) },
		Drifts: []restest.Drift{{Name: "useradd", Do: func(t *testing.T) { run(t, "", "useradd", "-M", name) }}},
	})
}

type recorder struct{ got []engine.Change }

func (r *recorder) Record(c engine.Change) { r.got = append(r.got, c) }

// The password hash appears nowhere: not in the logs, not in the reported
// changes (a Sensitive one, with fingerprints), not in the command lines
// (ps would show them) nor in the errors of a failing run. Every other
// differing property is reported with its values.
func TestPasswordNeverShown(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	const secret = "$6$planted$SECRETSECRETSECRET"
	run(t, "", "useradd", "-M", "-s", "/bin/sh", "mgmt-pw")
	var logs bytes.Buffer
	r := &User{Shell: "/bin/bash", Password: ptr(secret)}
	r.SetName("mgmt-pw")
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	env := restest.Env(t, "user")
	env.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := r.Init(env); err != nil {
		t.Fatal(err)
	}
	for _, apply := range []bool{false, true} {
		rec := &recorder{}
		changed, err := r.CheckApply(engine.WithRecorder(context.Background(), rec), apply)
		if err != nil || !changed {
			t.Fatalf("CheckApply(%v) = %v, %v", apply, changed, err)
		}
		want := []engine.Change{
			{Property: "shell", From: "/bin/sh", To: "/bin/bash"},
			{Property: "password", From: Fingerprint("!"), To: Fingerprint(secret), Sensitive: true},
		}
		if len(rec.got) != len(want) || rec.got[0] != want[0] || rec.got[1] != want[1] {
			t.Errorf("CheckApply(%v) reported\n%+v\nwant\n%+v", apply, rec.got, want)
		}
	}
	if hash, _, _ := shadow.Password("mgmt-pw"); hash != secret {
		t.Fatalf("the hash was not set: %q", hash)
	}
	// A failing run: usermod refuses uid 0 (root's) without
	// allowduplicateuid; its error quotes its command line.
	r.UID = ptr(uint32(0))
	r.Password = ptr(secret + "x")
	_, err := r.CheckApply(context.Background(), true)
	if err == nil {
		t.Fatal("usermod -u 0 did not fail")
	}
	all := logs.String() + errString(err)
	if strings.Contains(all, "SECRET") {
		t.Errorf("the hash appears in the output:\n%s", all)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
