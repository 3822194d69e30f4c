package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Input that cannot work is refused with 2 before any connection; a host
// that refuses the TCP connection fails as unreachable (1), with a
// summary line.
func TestRunRemoteInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "graph.yaml")
	os.WriteFile(good, []byte("resources: {noop: [{name: a}]}\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("resources: {nosuchkind: [{name: a}]}\n"), 0o644)
	kv := filepath.Join(dir, "kv.yaml")
	os.WriteFile(kv, []byte("resources:\n  kv: [{name: k, value: v}]\n"), 0o644)
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("# fleet\nweb1\nftp://web2\n"), 0o644)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	os.WriteFile(key, pem.EncodeToMemory(block), 0o600)
	common := []string{"--remote-key", key, "--remote-known-hosts", filepath.Join(dir, "known_hosts")}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--file", good, "--remote", "ftp://x"}, exitInvalid, "want ssh://user@host[:port]"},
		{[]string{"--file", good, "--remote-hosts", hosts}, exitInvalid, hosts + ":3:"},
		{[]string{"--file", good, "--remote", "a", "--remote", "a"}, exitInvalid, "given twice"},
		{[]string{"--file", good, "--remote", "a", "--hostname", "h"}, exitInvalid, "--hostname does not go with --remote"},
		{[]string{"--file", good, "--remote", "a", "--remote-parallel", "0"}, exitInvalid, "at least 1"},
		{[]string{"--file", bad, "--remote", "ssh://root@127.0.0.1:1"}, exitInvalid, "bad.yaml:1:"},
		{[]string{"--file", good, "--remote", "ssh://root@127.0.0.1:1"}, exitFailed, "remote 127.0.0.1:1: FAILED: 127.0.0.1:1: unreachable"},
		// A kv needs the cluster as exports do: the controller starts the
		// etcd the hosts reach through their tunnels.
		{[]string{"--file", kv, "--remote", "ssh://root@127.0.0.1:1"}, exitFailed, "etcd for the remote hosts' exports"},
	} {
		code, out := capture(t, append(append([]string{"run"}, c.args...), common...)...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, out)
		}
		if c.code == exitInvalid && strings.Contains(out, " hosts, ") {
			t.Errorf("%v: invalid input went on to the hosts:\n%s", c.args, out)
		}
	}
}
