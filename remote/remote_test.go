package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Target
		err  bool
	}{
		{in: "ssh://root@web1", want: Target{"root", "web1", 22}},
		{in: "ssh://deploy@10.0.0.5:2222", want: Target{"deploy", "10.0.0.5", 2222}},
		{in: "ops@web2", want: Target{"ops", "web2", 22}},
		{in: "web3", want: Target{"me", "web3", 22}},
		{in: "ssh://root@[fe80::1]:22", want: Target{"root", "fe80::1", 22}},
		{in: "http://root@web1", err: true},
		{in: "ssh://root:secret@web1", err: true},
		{in: "ssh://root@web1/path", err: true},
		{in: "ssh://root@web1:0", err: true},
		{in: "ssh://root@web1:99999", err: true},
		{in: "ssh://root@", err: true},
	} {
		got, err := ParseTarget(c.in, "me")
		if c.err {
			if !errors.Is(err, ErrTarget) {
				t.Errorf("%q: %+v, %v: want ErrTarget", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v: want %+v", c.in, got, err, c.want)
		}
	}
	if n := (Target{"r", "h", 2222}).Name(); n != "h:2222" {
		t.Errorf("Name with a port: %q", n)
	}
}

func TestReadHostsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "hosts")
	os.WriteFile(good, []byte("# web\nssh://root@web1\n\n  web2  \n"), 0o644)
	ts, err := ReadHostsFile(good, "u")
	if err != nil || len(ts) != 2 || ts[1] != (Target{"u", "web2", 22}) {
		t.Errorf("%+v, %v", ts, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("web1\nftp://x\n"), 0o644)
	if _, err := ReadHostsFile(bad, "u"); !errors.Is(err, ErrTarget) || !strings.Contains(err.Error(), bad+":2:") {
		t.Errorf("bad line: %v, want ErrTarget naming %s:2", err, bad)
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "/tmp/a b", "it's", "", "$(rm -rf /)", "a\nb", "--x=y"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("%q quoted as %s: the shell read %q, %v", s, shellQuote(s), out, err)
		}
	}
}

func newHostKey(t *testing.T) ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestHostKeyPolicy: unknown refused, unknown added with AcceptNew (once,
// even when asked twice), changed refused with or without AcceptNew, and
// the algorithms asked for are those known_hosts lists.
func TestHostKeyPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "known_hosts") // not there yet
	tgt := Target{"root", "10.1.2.3", 22}
	addr := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 22}
	key, other := newHostKey(t), newHostKey(t)
	check := func(a *Auth, k ssh.PublicKey) error {
		var checked bool
		cb, _, err := a.hostKey(tgt, &checked)
		if err != nil {
			t.Fatal(err)
		}
		err = cb(tgt.Addr(), addr, k)
		if (err == nil) != checked {
			t.Errorf("checked %v with error %v", checked, err)
		}
		return err
	}
	strict := &Auth{KnownHosts: file}
	if err := check(strict, key); !errors.Is(err, ErrUnknownHostKey) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a refused key created known_hosts: %v", err)
	}
	lax := &Auth{KnownHosts: file, AcceptNew: true}
	for range 2 {
		if err := check(lax, key); err != nil {
			t.Fatalf("AcceptNew: %v", err)
		}
	}
	b, _ := os.ReadFile(file)
	if strings.Count(string(b), "\n") != 1 || !strings.HasPrefix(string(b), "10.1.2.3 ssh-ed25519 ") {
		t.Errorf("known_hosts: %q, want one line for 10.1.2.3", b)
	}
	if err := check(strict, key); err != nil {
		t.Errorf("known key: %v", err)
	}
	for _, a := range []*Auth{strict, lax} {
		err := check(a, other)
		var hke *HostKeyError
		if !errors.Is(err, ErrChangedHostKey) || !errors.As(err, &hke) || hke.Fingerprint != ssh.FingerprintSHA256(other) {
			t.Errorf("changed key (AcceptNew %v): %v", a.AcceptNew, err)
		}
	}
	if b2, _ := os.ReadFile(file); string(b2) != string(b) {
		t.Errorf("a changed key was written: %q", b2)
	}
	var checked bool
	_, algos, err := strict.hostKey(tgt, &checked)
	if err != nil || len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("algorithms for a host known by ed25519: %v, %v", algos, err)
	}
	// A host with a port is written the way OpenSSH writes it.
	tp := Target{"root", "10.1.2.3", 2222}
	var c2 bool
	cb, _, _ := lax.hostKey(tp, &c2)
	if err := cb(tp.Addr(), addr, other); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(file)
	if !strings.Contains(string(b), knownhosts.Normalize("10.1.2.3:2222")+" ") {
		t.Errorf("known_hosts lacks [10.1.2.3]:2222: %q", b)
	}
}
