package sshkey

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// pub returns the base64 material of an ssh public key of type t whose
// key bytes are all b.
func pub(t string, b byte) string {
	var buf []byte
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(t)))
	buf = append(buf, t...)
	buf = binary.BigEndian.AppendUint32(buf, 32)
	for range 32 {
		buf = append(buf, b)
	}
	return base64.StdEncoding.EncodeToString(buf)
}

var (
	keyA = pub("ssh-ed25519", 'a')
	keyB = pub("ssh-ed25519", 'b')
)

func newKey(user, key string) *Key {
	r := &Key{User: user, Type: "ssh-ed25519", Key: key, Comment: "alice@laptop", Options: []string{`from="10.0.0.0/8"`, "no-pty"}}
	r.SetName("alice-laptop")
	return r
}

func TestValidate(t *testing.T) {
	tests := []struct {
		res  Key
		want string
	}{
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA}, ""},
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA, Options: []string{`command="echo \"hi, there\""`, "restrict"}}, ""},
		{Key{User: "", Type: "ssh-ed25519", Key: keyA}, "user: missing: want a name, e.g. alice"},
		{Key{User: "alice", Type: "ssh-foo", Key: keyA}, "type: \"ssh-foo\" is not a key type: want one of " + strings.Join(Types, ", ")},
		{Key{User: "alice", Type: "ssh-rsa", Key: keyA}, "key: holds a ssh-ed25519 key, but type is ssh-rsa: want type: ssh-ed25519"},
		{Key{User: "alice", Type: "ssh-ed25519"}, "key: missing: want the key's base64 material, the second field of a .pub file"},
		{Key{User: "alice", Type: "ssh-ed25519", Key: "AAAA"}, "key: does not hold an ssh public key (no key type at its start)"},
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA, Options: []string{"no-pty,no-x11-forwarding"}}, `options[0]: "no-pty,no-x11-forwarding" has a space or comma outside quotes: give one option per item, e.g. from="10.0.0.0/8"`},
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA, Options: []string{`command="x`}}, `options[0]: "command=\"x" has an unterminated quote`},
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA, Comment: "a\nssh-ed25519 " + keyB}, "comment: has a line break or NUL: want one line"},
		{Key{User: "alice", Type: "ssh-ed25519", Key: keyA, State: "present"}, `state: "present" is invalid: want exists (the default) or absent`},
	}
	for _, tt := range tests {
		r := tt.res
		got := ""
		if err := r.Validate(); err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, tt.want) || (tt.want == "") != (got == "") {
			t.Errorf("Validate(%+v) =\n%s\nwant\n%s", tt.res, got, tt.want)
		}
	}
}

// edit keeps every other line as it is, rewrites the key's line when its
// options or comment differ, removes duplicates, and appends a missing key.
func TestEdit(t *testing.T) {
	r := newKey("alice", keyA)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	line := r.Line()
	other := "ssh-ed25519 " + keyB + " bob"
	tests := []struct {
		name, old, want, change string
		absent                  bool
	}{
		{"empty", "", line + "\n", "state", false},
		{"appended", "# keys\n" + other + "\n", "# keys\n" + other + "\n" + line + "\n", "state", false},
		{"in place", line + "\n" + other, line + "\n" + other, "", false},
		{"rewritten", "ssh-ed25519 " + keyA + " old\n" + other + "\n", line + "\n" + other + "\n", "line", false},
		{"options with spaces", `command="a b" ssh-ed25519 ` + keyA + "\n", line + "\n", "line", false},
		{"duplicates", line + "\n" + other + "\n" + line + "\n", line + "\n" + other + "\n", "duplicates", false},
		{"removed", other + "\n" + "ssh-ed25519 " + keyA + " x\n", other + "\n", "state", true},
		{"absent already", other + "\n", other + "\n", "", true},
	}
	for _, tt := range tests {
		got, c := edit([]byte(tt.old), r, tt.absent)
		if string(got) != tt.want {
			t.Errorf("%s: edit =\n%q\nwant\n%q", tt.name, got, tt.want)
		}
		if (c == nil) != (tt.change == "") || c != nil && c.Property != tt.change {
			t.Errorf("%s: change %+v, want %q", tt.name, c, tt.change)
		}
	}
}

// Collected, a key is authorized for the local user the pattern names.
func TestCollect(t *testing.T) {
	r := newKey("root", keyA)
	c, err := r.Collect("jump")
	if err != nil {
		t.Fatal(err)
	}
	k := c.(*Key)
	if k.User != "jump" || k.Line() != r.Line() {
		t.Errorf("collected %+v", k)
	}
	if _, err := r.Collect("../etc"); !errors.Is(err, ErrCollect) {
		t.Errorf("Collect(../etc) = %v, want ErrCollect", err)
	}
	var _ engine.Collector = r
}

func FuzzValidate(f *testing.F) {
	f.Add("alice", "ssh-ed25519", keyA, "c", `from="1.2.3.4"`)
	f.Add("a", "ssh-rsa", "!!", "x\ny", `a"b`)
	f.Fuzz(func(t *testing.T, user, typ, key, comment, opt string) {
		r := &Key{User: user, Type: typ, Key: key, Comment: comment, Options: []string{opt}}
		if r.Validate() != nil {
			return
		}
		line := r.Line()
		if strings.ContainsAny(line, "\n\r\x00") {
			t.Fatalf("accepted a line break: %q", line)
		}
		// The line written is read back as the same key.
		if b := lineBlob(line); string(b) != string(r.blob) {
			t.Fatalf("line %q reads back as another key", line)
		}
	})
}

func run(t *testing.T, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// keyState is the user's ~/.ssh and authorized_keys: modes, owners, content.
func keyState(t *testing.T, home string) string {
	var b strings.Builder
	for _, p := range []string{filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		fi, err := os.Lstat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s: absent\n", p)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s: %v %d:%d\n", p, fi.Mode(), st.Uid, st.Gid)
		if !fi.IsDir() {
			data, _ := os.ReadFile(p)
			b.Write(data)
		}
	}
	return b.String()
}

// The conformance suite, inside a test host, on a real user's home: the
// key is added, with ~/.ssh 0700 and authorized_keys 0600 owned by the
// user; a rewrite of the file, a chmod of it and of ~/.ssh, and its
// removal are repaired, and the lines of other keys are kept.
func TestConformance(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	run(t, "useradd", "-m", "-u", "4300", "mgmt-k")
	const home = "/home/mgmt-k"
	ak := home + "/.ssh/authorized_keys"
	restest.Run(t, restest.Case{
		Kind:  Kind,
		Res:   func(t *testing.T) engine.Res { return newKey("mgmt-k", keyA) },
		State: func(t *testing.T) string { return keyState(t, home) },
		Drifts: []restest.Drift{
			// sed -i writes a new file and renames it over the old one.
			{Name: "sed -i: the key's options and comment changed", Do: func(t *testing.T) {
				run(t, "sed", "-i", "s/^from=[^ ]* /restrict /; s/alice@laptop/mallory/", ak)
			}},
			{Name: "sed -i: the key's line removed", Do: func(t *testing.T) { run(t, "sed", "-i", "/alice@laptop/d", ak) }},
			{Name: "chmod 0644 authorized_keys", Do: func(t *testing.T) { run(t, "chmod", "0644", ak) }},
			{Name: "chmod 0755 ~/.ssh", Do: func(t *testing.T) { run(t, "chmod", "0755", home+"/.ssh") }},
			{Name: "chown root authorized_keys", Do: func(t *testing.T) { run(t, "chown", "root:root", ak) }},
			{Name: "rm -r ~/.ssh", Do: func(t *testing.T) { run(t, "rm", "-r", home+"/.ssh") }},
		},
	})
	got := keyState(t, home)
	want := home + "/.ssh: drwx------ 4300:4300\n" + ak + ": -rw------- 4300:4300\n" + newKey("", keyA).Line() + "\n"
	if !strings.HasSuffix(got, want) && got != want {
		t.Errorf("at the end:\n%s\nwant\n%s", got, want)
	}
}

// ~/.ssh as a symbolic link (the user owns the home and could point root's
// writes anywhere) is refused, and nothing is written through it.
func TestSymlinkRefused(t *testing.T) {
	if !testhost.InHost(t, testhost.Options{}) {
		return
	}
	run(t, "useradd", "-m", "mgmt-evil")
	run(t, "mkdir", "/root/target")
	run(t, "ln", "-s", "/root/target", "/home/mgmt-evil/.ssh")
	r := newKey("mgmt-evil", keyA)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CheckApply(t.Context(), true); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("CheckApply through a link = %v, want refused", err)
	}
	if _, err := os.Stat("/root/target/authorized_keys"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("written through the link: %v", err)
	}
}
