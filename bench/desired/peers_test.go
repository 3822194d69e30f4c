//go:build peers

// The peers' tests need Puppet, Ansible and CFEngine installed; only `make
// bench` installs them, and runs these with -tags peers, so that a plain
// `go test ./...` neither runs nor skips them.

package desired

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFilesPeers applies the same small tree with each peer and checks that every file holds exactly its content: the
// peers' desired state is the one mgmt gets.
func TestFilesPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("the peers run as root here (running as uid %d)", os.Geteuid())
	}
	for _, peer := range []struct{ name, cmd string }{{Puppet, "puppet"}, {Ansible, "ansible-playbook"}, {CFEngine, "cf-agent"}} {
		t.Run(peer.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(peer.cmd); err != nil {
				t.Fatalf("%s is not installed (make bench installs it): %v", peer.cmd, err)
			}
			dir := t.TempDir()
			f := Files{Root: filepath.Join(dir, "tree"), N: 3}
			var argv, env []string
			var gen []byte
			switch peer.name {
			case Puppet:
				gen = f.Puppet()
				p := filepath.Join(dir, "puppet")
				argv = []string{"puppet", "apply", "--detailed-exitcodes", "--vardir", p + "/var", "--confdir", p + "/etc",
					"--codedir", p + "/code", "--logdir", p + "/log", "--rundir", p + "/run", "--publicdir", p + "/public"}
				env = []string{"HOME=" + dir}
			case Ansible:
				gen = f.Ansible()
				argv = []string{"ansible-playbook", "-c", "local", "-i", "localhost,"}
				env = []string{"HOME=" + dir, "ANSIBLE_HOME=" + dir + "/ansible", "ANSIBLE_LOCAL_TEMP=" + dir + "/ansible/tmp",
					"ANSIBLE_REMOTE_TEMP=" + dir + "/ansible/rtmp", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3"}
			case CFEngine:
				gen = f.CFEngine()
				wd := filepath.Join(dir, "cfengine")
				os.MkdirAll(wd, 0o700)
				if err := os.Symlink("/usr/bin", filepath.Join(wd, "bin")); err != nil {
					t.Fatal(err)
				}
				env = []string{"CFENGINE_TEST_OVERRIDE_WORKDIR=" + wd}
				run(t, env, "cf-key")
				argv = []string{"cf-agent", "-K", "-f"}
			}
			m := filepath.Join(dir, "desired")
			if err := os.WriteFile(m, gen, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, env, append(argv, m)...)
			verify(t, f)
			os.WriteFile(f.Path(1), []byte("edited\n"), 0o644)
			run(t, env, append(argv, m)...)
			verify(t, f)
		})
	}
}
