package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/bench/desired"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// Paths inside a test host.
const (
	hostMgmt   = "/usr/local/bin/mgmt"
	hostHelper = "/usr/local/bin/bench-timeit"
	hostDir    = "/root/bench"
	// cfModule is where CFEngine looks for the apt_get package module.
	cfModule = "/var/lib/cfengine3/modules/packages/apt_get"
	// cfModuleSrc is the module as the masterfiles ship it (no template
	// markers: it is installed as is).
	cfModuleSrc = "/usr/share/cfengine3/masterfiles/modules/packages/vendored/apt_get.mustache"
)

// benchPkgs are the three packages of the package scenario: independent of
// each other, so that ungrouped transactions cannot trip over a shared
// dependency.
var benchPkgs = []string{testrepo.PkgA, testrepo.PkgC, testrepo.PkgVer}

// bootHost boots a test host with the local repository as its only apt
// source, the mgmt binary and this program (for timeit) installed. The
// caller stops it.
func (b *bench) bootHost(ctx context.Context, name string) (*testhost.Host, inHost, error) {
	if miss := testhost.Missing(); len(miss) > 0 {
		return nil, inHost{}, fmt.Errorf("test hosts cannot run here: missing %s", strings.Join(miss, ", "))
	}
	repo := b.path("repo")
	if _, err := os.Stat(repo + "/Packages"); err != nil {
		if err := os.MkdirAll(repo, 0o755); err != nil {
			return nil, inHost{}, err
		}
		if _, err := testrepo.Build(ctx, repo, testrepo.Default()); err != nil {
			return nil, inHost{}, err
		}
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	h, err := testhost.Start(bctx, testhost.Options{Name: name, AptRepo: repo, Logger: quiet})
	if err != nil {
		return nil, inHost{}, err
	}
	exe, err := os.Executable()
	if err == nil {
		_, err = h.InstallBinary(exe, "bench-timeit")
	}
	if err == nil {
		_, err = h.InstallBinary(b.mgmt, "mgmt")
	}
	if err != nil {
		return nil, inHost{}, errors.Join(err, h.Stop())
	}
	return h, inHost{h: h, helper: hostHelper}, nil
}

// dpkgInstalled reports which of names dpkg has installed inside the host.
func dpkgInstalled(ctx context.Context, t target, names ...string) (map[string]bool, error) {
	r, err := t.run(ctx, nil, append([]string{"dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n"}, names...)...)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, line := range strings.Split(string(r.out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "installed" {
			got[f[0]] = true
		}
	}
	return got, nil
}

func verifyInstalled(ctx context.Context, t target, names ...string) error {
	got, err := dpkgInstalled(ctx, t, names...)
	if err != nil {
		return err
	}
	var missing []string
	for _, n := range names {
		if !got[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not installed afterwards: %s", strings.Join(missing, ", "))
	}
	return nil
}

// runAll runs each command in turn and returns their summed time.
func runAll(ctx context.Context, t target, env []string, ok []int, cmds [][]string) (time.Duration, error) {
	var sum time.Duration
	for _, argv := range cmds {
		d, err := timed(ctx, t, env, ok, argv...)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

func (b *bench) pkgScenario(ctx context.Context) *scenario {
	s := &scenario{
		id:      "pkgs",
		title:   "1. three packages",
		metrics: []metric{{name: "install", unit: "s"}, {name: "check, nothing to do", unit: "s"}},
		runs:    b.plan.pkgRuns,
		budget:  b.plan.pkgBudget,
		minRuns: 2,
		warmup:  true,
		notes: []string{fmt.Sprintf("Install %s, then check them with nothing to do, inside one test host against the local repository. "+
			"Before each run they are purged (untimed); after each phase the program checks with dpkg-query that all three are installed. "+
			"mgmt grouped: one pkg vertex, one PackageKit transaction; ungrouped: `meta: {autogroup: false}`, three transactions. "+
			"mgmt's pkg resources carry `allowunsupported: true`, since PackageKit does not count the local repository as the distribution's own.",
			strings.Join(benchPkgs, ", "))},
	}
	pending := func(why string) *scenario {
		s.tools = []*tool{{name: toolMgmt, notRun: why}}
		return s
	}
	h, t, err := b.bootHost(ctx, "bench-pkgs")
	if err != nil {
		return pending("not run: " + err.Error())
	}
	s.teardown = func() {
		if err := h.Stop(); err != nil {
			b.log.Warn("stopping the test host", "err", err)
		}
	}
	p := desired.Packages{Names: benchPkgs, AllowUnsupported: true}
	pu := desired.Packages{Names: benchPkgs, Ungrouped: true, AllowUnsupported: true}
	files := map[string][]byte{"pkgs.yaml": p.Mgmt(), "pkgs-ungrouped.yaml": pu.Mgmt(), "pkgs.pp": p.Puppet(), "pkgs.yml": p.Ansible(), "pkgs.cf": p.CFEngine()}
	for name, data := range files {
		if err := h.WriteFile(hostDir+"/"+name, data, 0o644); err != nil {
			return pending("not run: " + err.Error())
		}
	}
	if b.have(toolCFEngine) == "" {
		mod, err := os.ReadFile(cfModuleSrc)
		if err == nil {
			err = h.WriteFile(cfModule, mod, 0o700)
		}
		if err != nil {
			b.missing[toolCFEngine] = "apt_get package module: " + err.Error()
		}
	}
	purge := func(ctx context.Context) error {
		r, err := t.run(ctx, nil, append([]string{"dpkg", "--purge"}, benchPkgs...)...)
		if err != nil {
			return err
		}
		return r.ok()
	}
	// trial installs with install, then checks with check; either may be
	// several commands, whose times are summed.
	trial := func(env []string, okInstall, okCheck []int, install, check [][]string) func(context.Context) ([][]float64, error) {
		return func(ctx context.Context) ([][]float64, error) {
			out := [][]float64{na, na}
			if len(install) > 0 {
				d, err := runAll(ctx, t, env, okInstall, install)
				if err != nil {
					return nil, err
				}
				if err := verifyInstalled(ctx, t, benchPkgs...); err != nil {
					return nil, fmt.Errorf("install: %w", err)
				}
				out[0] = secs(d)
			}
			d, err := runAll(ctx, t, env, okCheck, check)
			if err != nil {
				return nil, err
			}
			if err := verifyInstalled(ctx, t, benchPkgs...); err != nil {
				return nil, fmt.Errorf("check: %w", err)
			}
			out[1] = secs(d)
			return out, nil
		}
	}
	mk := func(name string, env []string, okInstall, okCheck []int, install, check [][]string) *tool {
		tl := b.peerTool(name, trial(env, okInstall, okCheck, install, check))
		tl.reset = purge
		return tl
	}
	same := func(argv ...string) [][]string { return [][]string{argv} }
	mgmtCmd := func(graph string) [][]string {
		return same(b.mgmtRun(hostMgmt, hostDir+"/"+graph, "/root/mgmt-prefix")...)
	}
	mg := mk(toolMgmt, nil, nil, nil, mgmtCmd("pkgs.yaml"), mgmtCmd("pkgs.yaml"))
	mg.ref, mg.note = true, "grouped: one transaction"
	mgu := mk(toolMgmt+" ungrouped", nil, nil, nil, mgmtCmd("pkgs-ungrouped.yaml"), mgmtCmd("pkgs-ungrouped.yaml"))
	mgu.note = "`meta: {autogroup: false}`: a transaction per package"
	if err := mgmtKnows(ctx, t, hostMgmt, hostDir+"/pkgs.yaml"); err != nil {
		why := "the pkg kind: " + err.Error()
		if errors.Is(err, errPending) {
			why = "the pkg resource (resources/pkg) is not in ./mgmt yet: " + strings.TrimPrefix(err.Error(), errPending.Error()+": ")
		}
		mg.pending, mgu.pending = why, why
	}
	pkcon := append([]string{"pkcon", "-y", "-p", "install"}, benchPkgs...)
	var pkconEach [][]string
	for _, n := range benchPkgs {
		pkconEach = append(pkconEach, []string{"pkcon", "-y", "-p", "install", n})
	}
	aptGet := append([]string{"apt-get", "install", "-y", "-q"}, benchPkgs...)
	// pkcon exits 5 when there was nothing to do ("The selected packages may
	// already be installed").
	pkconCheckOK := []int{0, 5}
	pk := mk("pkcon", nil, nil, pkconCheckOK, same(pkcon...), same(pkcon...))
	pk.note = "one transaction"
	pk3 := mk("pkcon, one per package", nil, nil, pkconCheckOK, pkconEach, pkconEach)
	pk3.note = "one `pkcon install` per package, in turn"
	dpkg := mk("dpkg -s (floor)", nil, nil, nil, nil, same(append([]string{"dpkg", "-s"}, benchPkgs...)...))
	dpkg.reset = func(ctx context.Context) error {
		if err := purge(ctx); err != nil {
			return err
		}
		_, err := runAll(ctx, t, nil, nil, same(aptGet...))
		return err
	}
	s.tools = []*tool{
		mg, mgu,
		mk(toolPuppet, nil, puppetOK, puppetOK, same(b.puppetApply(hostDir+"/pkgs.pp", true)...), same(b.puppetApply(hostDir+"/pkgs.pp", true)...)),
		mk(toolAnsible, ansibleHostEnv, nil, nil, same(ansiblePlaybook(hostDir+"/pkgs.yml")...), same(ansiblePlaybook(hostDir+"/pkgs.yml")...)),
		mk(toolCFEngine, nil, nil, nil, same(cfAgent(hostDir+"/pkgs.cf")...), same(cfAgent(hostDir+"/pkgs.cf")...)),
		pk, pk3,
		mk("apt-get", nil, nil, nil, same(aptGet...), same(aptGet...)),
		dpkg,
	}
	if b.plan.pkgPeers != nil {
		for _, t := range s.tools[2:] {
			if t.notRun == "" && !slices.Contains(b.plan.pkgPeers, t.name) {
				t.notRun = fmt.Sprintf("not run in the %s subset (`make bench` runs it)", b.plan.name)
			}
		}
	}
	return s
}
