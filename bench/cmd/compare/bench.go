package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// scenarioIDs are the scenarios, in the order of the table.
var scenarioIDs = []string{"pkgs", "files", "execs", "drift", "export", "scale", "startup"}

// bench holds what every scenario shares.
type bench struct {
	log        *slog.Logger
	work       string
	mgmt       string // absolute path of the mgmt binary on this machine
	plan       plan
	local      local
	installErr []string
	missing    map[string]string // tool -> why it cannot run
}

func newBench(ctx context.Context, log *slog.Logger, work, mgmt string, p plan) *bench {
	b := &bench{log: log, work: work, mgmt: mgmt, plan: p, missing: map[string]string{}}
	home := b.path("home")
	os.MkdirAll(home, 0o755)
	b.local = local{base: []string{
		"PATH=" + basePath,
		"LANG=C.UTF-8",
		"HOME=" + home,
		// Ansible and CFEngine keep their state in the work directory,
		// not in /root or /var/lib/cfengine3 of this machine.
		"ANSIBLE_HOME=" + b.path("ansible"),
		"ANSIBLE_LOCAL_TEMP=" + b.path("ansible/tmp"),
		"ANSIBLE_REMOTE_TEMP=" + b.path("ansible/remote-tmp"),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
		"CFENGINE_TEST_OVERRIDE_WORKDIR=" + b.path("cfengine"),
	}}
	return b
}

// path returns a path under the work directory.
func (b *bench) path(elem ...string) string {
	return filepath.Join(append([]string{b.work}, elem...)...)
}

// write writes a generated file under the work directory and returns its
// path.
func (b *bench) write(name string, data []byte) (string, error) {
	p := b.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, data, 0o644)
}

// findTools notes which peers cannot run here, and prepares CFEngine's
// work directory (its bin link, as Debian's /var/lib/cfengine3 has, and a
// key pair).
func (b *bench) findTools(ctx context.Context) {
	for tool, cmd := range map[string]string{toolPuppet: "puppet", toolAnsible: "ansible-playbook", toolCFEngine: "cf-agent"} {
		if _, err := exec.LookPath(cmd); err != nil {
			b.missing[tool] = fmt.Sprintf("not installed (%s not found)", cmd)
		}
	}
	if b.missing[toolCFEngine] == "" {
		cf := b.path("cfengine")
		os.MkdirAll(cf, 0o700)
		if err := os.Symlink("/usr/bin", filepath.Join(cf, "bin")); err != nil {
			b.missing[toolCFEngine] = "work directory: " + err.Error()
		} else if r, err := b.local.run(ctx, nil, "cf-key"); err != nil || r.ok() != nil {
			b.missing[toolCFEngine] = fmt.Sprintf("cf-key: %v %v", err, r.ok())
		}
	}
}

// sizesOf lists the file sizes at which a peer runs in this plan.
func (b *bench) sizesOf(peer string) []string {
	var out []string
	for _, fs := range b.plan.fileSizes {
		if slices.Contains(fs.peers, peer) {
			out = append(out, fmt.Sprint(fs.n))
		}
	}
	return out
}

// have returns "" when tool can run, else why not.
func (b *bench) have(tool string) string { return b.missing[tool] }

// Command lines. in says whether the command runs inside a test host
// (where the tools keep their state in their default places, in the
// host's throw-away layer).

func (b *bench) mgmtRun(bin, graph, prefix string) []string {
	return []string{bin, "run", "--file", graph, "--converged-timeout=0", "--no-watch", "--prefix", prefix}
}

func (b *bench) puppetApply(manifest string, in bool) []string {
	argv := []string{"puppet", "apply", "--detailed-exitcodes", "--color=false"}
	if !in {
		p := b.path("puppet")
		argv = append(argv, "--vardir", p+"/var", "--confdir", p+"/etc", "--codedir", p+"/code",
			"--logdir", p+"/log", "--rundir", p+"/run", "--publicdir", p+"/public")
	}
	return append(argv, manifest)
}

// puppetOK: --detailed-exitcodes says 0 for no change, 2 for changes.
var puppetOK = []int{0, 2}

func ansiblePlaybook(play string) []string {
	return []string{"ansible-playbook", "-c", "local", "-i", "localhost,", play}
}

// ansibleHostEnv is Ansible's environment inside a host.
var ansibleHostEnv = []string{"ANSIBLE_NOCOLOR=1", "ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3"}

func cfAgent(policy string) []string { return []string{"cf-agent", "-K", "-f", policy} }

func (b *bench) versions(ctx context.Context) [][2]string {
	return [][2]string{
		{"mgmt", versionOf(ctx, b.mgmt, "--version")},
		{"Puppet", versionOf(ctx, "puppet", "--version") + " (Debian package " + debVersion(ctx, "puppet") + ")"},
		{"Ansible", versionOf(ctx, "ansible-playbook", "--version") + " (Debian package ansible-core " + debVersion(ctx, "ansible-core") + ")"},
		{"CFEngine", versionOf(ctx, "cf-agent", "--version") + " (Debian package cfengine3 " + debVersion(ctx, "cfengine3") + ")"},
		// pkcon --version asks the daemon, which runs only inside test hosts.
		{"PackageKit", "Debian package packagekit " + debVersion(ctx, "packagekit") + ", pkcon from packagekit-tools " + debVersion(ctx, "packagekit-tools")},
		{"apt", versionOf(ctx, "apt-get", "--version")},
		{"bash", versionOf(ctx, "bash", "--version")},
		{"systemd", versionOf(ctx, "/lib/systemd/systemd", "--version")},
		{"Go (this program)", runtime.Version()},
	}
}

func (b *bench) howRun() []string {
	p := b.path("puppet")
	return []string{
		"**mgmt**: `mgmt run --file GRAPH --converged-timeout=0 --no-watch --prefix DIR` for one-shot runs " +
			"(it exits once everything is converged); without `--converged-timeout` for the drift scenario, where it keeps running.",
		"**Puppet**: `puppet apply --detailed-exitcodes --color=false MANIFEST` (exit 0 or 2 accepted); " +
			"on this machine with its state moved into the work directory (`--vardir`, `--confdir`, `--codedir`, `--logdir`, `--rundir`, `--publicdir` under `" +
			strings.TrimPrefix(p, b.work+"/") + "/` in it). `file` resources with `content`, `package` resources (an array title: one resource, " +
			"and one apt-get run, per package), `exec` resources chained with `require`. Puppet runs Facter on every run, as it always does.",
		"**Ansible**: `ansible-playbook -c local -i localhost, PLAYBOOK` with `ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3`, and on this machine " +
			"`ANSIBLE_HOME`, `ANSIBLE_LOCAL_TEMP` and `ANSIBLE_REMOTE_TEMP` in the work directory. `gather_facts: false` (no task needs facts, " +
			"so Ansible gets its fastest form); the `file` module over the directories and the `copy` module with `content` over the files, " +
			"each a `loop`; one `apt` task with the list of packages (one apt transaction); `command` tasks for the execs.",
		"**CFEngine**: `cf-agent -K -f POLICY` (`-K`: ignore the locks that would otherwise skip a promise repeated within a minute); " +
			"on this machine with `CFENGINE_TEST_OVERRIDE_WORKDIR` pointing at a work directory with its own key pair (`cf-key`). " +
			"`files:` promises with `create => \"true\"` and `content` (CFEngine's own attribute for a file's whole content), " +
			"`packages:` promises with `policy => \"present\"` through the masterfiles' `apt_get` package module (installed into the host's " +
			"`/var/lib/cfengine3/modules/packages/`, as the masterfiles' update policy would; its installed-packages query is never cached), " +
			"`commands:` promises. Self-contained policies: no masterfiles library is parsed.",
		"**pkcon**: `pkcon -y -p install A B C` (one PackageKit transaction), and one `pkcon -y -p install X` per package; " +
			"the check is the same command again (exit 5, nothing useful done, accepted).",
		"**apt-get**: `apt-get install -y -q A B C`; the check is the same command again. **dpkg**: `dpkg -s A B C` is the floor of a check.",
		"**shell**: a bash script of builtins (files: read and compare, write only what differs, no fsync, no temporary file; " +
			"execs: the chain in a subshell beside the lone command, then `wait`): what no tool can beat.",
		"Package work runs inside one test host (test/testhost: its own systemd, D-Bus and PackageKit, an overlay of this machine's root) " +
			"against the local repository of test/testrepo, its only apt source; every tool runs inside that host, timed there by this program's " +
			"own `timeit` subcommand (so the time is the tool's alone, not nsenter's). Before each run the packages are purged with dpkg (untimed).",
		"Everything else runs on this machine, with files under the work directory (a temporary directory, removed at the end); " +
			"`sync` runs (untimed) before each timed phase, so that one tool's write-back does not land in another's time.",
	}
}

// scenarios builds the scenarios for one id.
func (b *bench) scenarios(ctx context.Context, id string) []*scenario {
	switch id {
	case "pkgs":
		return []*scenario{b.pkgScenario(ctx)}
	case "files":
		var out []*scenario
		for _, fs := range b.plan.fileSizes {
			out = append(out, b.filesScenario(fs))
		}
		return out
	case "execs":
		return []*scenario{b.execScenario()}
	case "drift":
		return []*scenario{b.driftScenario(ctx)}
	case "export":
		return []*scenario{b.exportScenario(ctx)}
	case "scale":
		return []*scenario{b.scaleScenario()}
	case "startup":
		return []*scenario{b.startupScenario()}
	}
	return nil
}

// mgmtKnows reports, through `mgmt validate` run by target t, whether the
// mgmt binary accepts a graph (nil), or why not (wrapping errPending).
func mgmtKnows(ctx context.Context, t target, bin, graph string) error {
	r, err := t.run(ctx, nil, bin, "validate", "--file", graph)
	if err != nil {
		return err
	}
	if r.code != 0 {
		return fmt.Errorf("%w: mgmt validate: %s", errPending, tail(r.out, 200))
	}
	return nil
}
