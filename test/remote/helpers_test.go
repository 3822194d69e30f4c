package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// env is a test bridge with a controller: a network namespace of its own
// on the bridge, where the mgmt under test runs with a temporary HOME, an
// explicit key and known_hosts file, and no SSH agent. This machine's own
// ~/.ssh and sshd are never used.
type env struct {
	t          testing.TB
	ctx        context.Context
	n          *testhost.Network
	ns         string // the controller's netns
	home       string
	key        string // the client's private key file
	authorized string // its authorized_keys line
	knownHosts string
	mgmt       string
}

func newEnv(t testing.TB, timeout time.Duration) *env {
	testhost.Require(t)
	testhost.RequireTools(t, "ip", "/usr/sbin/sshd", "sudo")
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, n: testhost.NewNetworkT(t), home: t.TempDir()}
	var err error
	if e.ns, _, err = e.n.AddNetNS(ctx); err != nil {
		t.Fatal(err)
	}
	signer, pemKey := newKey(t)
	e.key = filepath.Join(e.home, "id_test")
	if err := os.WriteFile(e.key, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	e.authorized = string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	e.knownHosts = filepath.Join(e.home, "known_hosts")
	e.mgmt = testhost.GoBuild(t, testhost.MgmtPackage)
	return e
}

// newKey is a fresh ed25519 key and its OpenSSH private key file.
func newKey(t testing.TB) (ssh.Signer, []byte) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "mgmt-test")
	if err != nil {
		t.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

// sshHost is a test host running Debian's sshd with a host key of its
// own, root's and user deploy's authorized_keys holding the test's key,
// and passwordless sudo for deploy; all inside the host's overlay.
type sshHost struct {
	e    *env
	h    *testhost.Host
	pub  ssh.PublicKey // its host key
	sshd *testhost.Proc
}

const sshdConfig = `Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/mgmt_test_host_key
PidFile /run/sshd-mgmt-test.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AuthorizedKeysFile .ssh/authorized_keys
AllowStreamLocalForwarding yes
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
`

func (e *env) startHost(name string) *sshHost {
	return e.startHostWith(testhost.Options{Name: name})
}

func (e *env) startHostWith(opts testhost.Options) *sshHost {
	t := e.t
	name := opts.Name
	s := &sshHost{e: e, h: e.n.StartT(t, opts)}
	// "*": no password, yet not locked ("!"), which sshd without PAM refuses.
	if _, err := s.h.Run(e.ctx, "useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", "deploy"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name, data string
		mode       os.FileMode
	}{
		{"/etc/ssh/sshd_mgmt_test_config", sshdConfig, 0o644},
		{"/root/.ssh/authorized_keys", e.authorized, 0o600},
		{"/home/deploy/.ssh/authorized_keys", e.authorized, 0o600},
		{"/etc/sudoers.d/mgmt-test", "deploy ALL=(ALL) NOPASSWD: ALL\n", 0o440},
		// sudo looks its host up; without this it warns on every run.
		{"/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 " + name + "\n", 0o644},
	} {
		if err := s.h.MkdirAll(filepath.Dir(f.name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := s.h.WriteFile(f.name, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.h.Run(e.ctx, "chown", "-R", "deploy:deploy", "/home/deploy/.ssh"); err != nil {
		t.Fatal(err)
	}
	if err := s.h.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	s.newHostKey()
	s.startSSHD()
	return s
}

// newHostKey gives the host a new host key (sshd must be restarted).
func (s *sshHost) newHostKey() {
	signer, pemKey := newKey(s.e.t)
	if err := s.h.WriteFile("/etc/ssh/mgmt_test_host_key", pemKey, 0o600); err != nil {
		s.e.t.Fatal(err)
	}
	s.pub = signer.PublicKey()
}

func (s *sshHost) startSSHD() {
	p, err := s.h.Spawn(s.e.ctx, "/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_mgmt_test_config")
	if err != nil {
		s.e.t.Fatal(err)
	}
	s.sshd = p
	s.e.t.Cleanup(func() { p.Stop(5 * time.Second) })
	wait.Until(s.e.t, 20*time.Second, func() bool { return strings.Contains(p.Output(), "Server listening on 0.0.0.0 port 22") },
		func() string { return "sshd did not start:\n" + p.Output() })
}

func (s *sshHost) restartSSHD() {
	if err := s.sshd.Stop(5 * time.Second); err != nil {
		s.e.t.Logf("sshd stop: %v", err)
	}
	s.startSSHD()
}

func (s *sshHost) name() string { return s.h.Name() }

// trust writes the hosts' keys into the controller's known_hosts.
func (e *env) trust(hosts ...*sshHost) {
	var b strings.Builder
	for _, s := range hosts {
		b.WriteString(knownhosts.Line([]string{s.h.Addr()}, s.pub) + "\n")
	}
	if err := os.WriteFile(e.knownHosts, []byte(b.String()), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// target is the --remote value for the host, as user.
func (s *sshHost) target(user string) string { return "ssh://" + user + "@" + s.h.Addr() }

// cmd is the controller's `mgmt run`, in its network namespace, with the
// test's key and known_hosts; args follow.
func (e *env) cmd(ctx context.Context, graph string, args ...string) *exec.Cmd {
	argv := append([]string{"netns", "exec", e.ns, e.mgmt, "run", "--file", graph,
		"--remote-key", e.key, "--remote-known-hosts", e.knownHosts, "--remote-keepalive", "1s"}, args...)
	c := exec.CommandContext(ctx, "ip", argv...)
	c.Env = []string{"HOME=" + e.home, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGKILL) }
	return c
}

// run runs the controller to its end: its output and exit status.
func (e *env) run(graph string, args ...string) (string, int) {
	c := e.cmd(e.ctx, graph, args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("mgmt run --remote %v (exit %d):\n%s", args, code, out.String())
	return out.String(), code
}

// writeGraph writes a graph file (and files next to it) in a new
// directory of the controller's.
func (e *env) writeGraph(graph string, files map[string][]byte) string {
	dir := e.t.TempDir()
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "graph.yaml")
	if err := os.WriteFile(p, []byte(graph), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// leftovers lists what the controller left in the private directories'
// parent (/tmp) and the login's cache, inside the host.
func (s *sshHost) leftovers() []string {
	var left []string
	for _, dir := range []string{"/tmp", "/root/.cache/mgmt-remote", "/home/deploy/.cache/mgmt-remote"} {
		ents, err := os.ReadDir(filepath.Join(s.h.Root(), dir))
		if err != nil {
			continue
		}
		for _, d := range ents {
			if dir != "/tmp" || strings.HasPrefix(d.Name(), "mgmt-remote-") {
				left = append(left, filepath.Join(dir, d.Name()))
			}
		}
	}
	return left
}

func (s *sshHost) noLeftovers(t *testing.T) {
	t.Helper()
	if l := s.leftovers(); len(l) > 0 {
		t.Errorf("host %s: left behind: %v", s.name(), l)
	}
}

// remoteProcs lists the mgmt processes running inside the host.
func (s *sshHost) remoteProcs() string {
	// pgrep leaves itself out; exit status 1 is "none".
	out, _ := s.h.Run(s.e.ctx, "pgrep", "-a", "-f", "mgmt-remote-[0-9a-f]+/mgmt")
	return strings.TrimSpace(string(out))
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func fileGraph(path, content string) string {
	return fmt.Sprintf(`graph: remote
resources:
  file:
  - name: f
    path: %s
    content: %q
`, path, content)
}

// onlySSHListens fails the test if anything but sshd listens on TCP in
// the host (the run reaches etcd through a unix socket).
func (s *sshHost) onlySSHListens(t *testing.T) {
	t.Helper()
	out, err := s.h.Run(s.e.ctx, "ss", "-Hltn")
	if err != nil {
		t.Fatalf("ss on %s: %v", s.name(), err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasSuffix(f[3], ":22") {
			t.Errorf("host %s: something other than sshd listens: %q", s.name(), l)
		}
	}
}

// cutLink takes h's link down (no FIN, no RST reach the controller), waits
// for the controller c to end, and wants it to exit 1 within limit of the
// cut; it returns the controller's output.
func (e *env) cutLink(t *testing.T, h *sshHost, c *exec.Cmd, out *strings.Builder, limit time.Duration) string {
	t.Helper()
	cut := time.Now()
	if _, err := h.h.Run(e.ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	err := c.Wait()
	t.Logf("controller after the cut (%v):\n%s", time.Since(cut), out.String())
	if c.ProcessState.ExitCode() != 1 {
		t.Errorf("exit %v, want 1", err)
	}
	if d := time.Since(cut); d > limit {
		t.Errorf("the cut was noticed after %v", d)
	}
	return out.String()
}
