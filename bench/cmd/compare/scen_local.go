package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/bench/desired"
	"golang.org/x/sys/unix"
)

// secs is one sample of one metric.
func secs(d time.Duration) []float64 { return []float64{d.Seconds()} }

var na = []float64{math.NaN()}

// timed runs argv on t, checks its exit status and returns its time.
func timed(ctx context.Context, t target, env []string, okCodes []int, argv ...string) (time.Duration, error) {
	r, err := t.run(ctx, env, argv...)
	if err != nil {
		return 0, err
	}
	if err := r.ok(okCodes...); err != nil {
		return 0, err
	}
	return r.elapsed, nil
}

// peerTool builds a tool; for a peer that cannot run here, one whose rows
// say why.
func (b *bench) peerTool(name string, trial func(ctx context.Context) ([][]float64, error)) *tool {
	t := &tool{name: name, trial: trial}
	if why := b.have(name); why != "" {
		t.notRun = why
	}
	return t
}

func (b *bench) startupScenario() *scenario {
	s := &scenario{
		id:      "startup",
		title:   "7. start-up",
		metrics: []metric{{name: "`--version`", unit: "s"}},
		runs:    b.plan.startupRuns,
		warmup:  true,
		notes: []string{"`TOOL --version` on this machine: the cost of starting the program (Ruby for Puppet, Python for Ansible), " +
			"paid again by every one-shot run. apt-get for scale (pkcon is left out: its --version asks the PackageKit daemon, which runs only inside test hosts)."},
	}
	cmd := func(name string, argv ...string) *tool {
		t := b.peerTool(name, func(ctx context.Context) ([][]float64, error) {
			d, err := timed(ctx, b.local, nil, nil, argv...)
			return [][]float64{secs(d)}, err
		})
		t.note = "`" + argv[0] + " --version`"
		if name == toolMgmt {
			t.ref, t.note = true, "`mgmt --version`"
		}
		return t
	}
	s.tools = []*tool{
		cmd(toolMgmt, b.mgmt, "--version"),
		cmd(toolPuppet, "puppet", "--version"),
		cmd(toolAnsible, "ansible-playbook", "--version"),
		cmd(toolCFEngine, "cf-agent", "--version"),
		cmd("apt-get", "apt-get", "--version"),
	}
	return s
}

func (b *bench) execScenario() *scenario {
	e := desired.Execs{Sleep: b.plan.execSleep}
	s := &scenario{
		id:      "execs",
		title:   fmt.Sprintf("3. four execs of `sleep %s`, three chained", e.Sleep),
		metrics: []metric{{name: "run", unit: "s"}},
		runs:    b.plan.execRuns,
		notes: []string{fmt.Sprintf("Four commands `env STEP=i sleep %s`: 1 → 2 → 3 in a chain, 4 alone. The critical path is three sleeps; "+
			"a tool that runs one command at a time needs four. mgmt runs the lone one beside the chain; "+
			"Puppet, Ansible and CFEngine run one at a time.", e.Sleep)},
	}
	files := map[string][]byte{"execs.yaml": e.Mgmt(), "execs.pp": e.Puppet(), "execs.yml": e.Ansible(), "execs.cf": e.CFEngine(), "execs.sh": e.Shell()}
	paths := map[string]string{}
	for name, data := range files {
		p, err := b.write("execs/"+name, data)
		if err != nil {
			s.tools = []*tool{{name: toolMgmt, notRun: "writing " + name + ": " + err.Error()}}
			return s
		}
		paths[name] = p
	}
	one := func(name string, env []string, ok []int, argv ...string) *tool {
		return b.peerTool(name, func(ctx context.Context) ([][]float64, error) {
			d, err := timed(ctx, b.local, env, ok, argv...)
			return [][]float64{secs(d)}, err
		})
	}
	mg := one(toolMgmt, nil, nil, b.mgmtRun(b.mgmt, paths["execs.yaml"], b.path("execs/mgmt-prefix"))...)
	mg.ref = true
	sh := one("shell (floor)", nil, nil, "bash", paths["execs.sh"])
	s.tools = []*tool{
		mg,
		one(toolPuppet, nil, puppetOK, b.puppetApply(paths["execs.pp"], false)...),
		one(toolAnsible, nil, nil, ansiblePlaybook(paths["execs.yml"])...),
		one(toolCFEngine, nil, nil, cfAgent(paths["execs.cf"])...),
		sh,
	}
	return s
}

// syncAll flushes every filesystem's dirty pages (untimed, between phases).
func syncAll() { unix.Sync() }

func (b *bench) filesScenario(size fileSize) *scenario {
	n := size.n
	f := desired.Files{Root: b.path(fmt.Sprintf("files-%d/tree", n)), N: n}
	dir := fmt.Sprintf("files-%d/", n)
	s := &scenario{
		id:    "files",
		title: fmt.Sprintf("2. %d files", n),
		metrics: []metric{
			{name: "first apply", unit: "s"},
			{name: "check, nothing to do", unit: "s"},
			{name: "repair 10 edited", unit: "s"},
		},
		runs:    b.plan.fileRuns,
		budget:  b.plan.fileBudget,
		minRuns: 1,
		notes: []string{fmt.Sprintf("%d files with given contents (two lines each), %d to a directory; the directories "+
			"and their parent are part of the desired state. Each run starts from nothing: first apply, then a check with nothing to do, "+
			"then a repair after 10 files were overwritten. After every phase the program reads every file back and fails the run "+
			"unless each holds its content.", n, desired.PerDir)},
	}
	gen := map[string][]byte{"graph.yaml": f.Mgmt(), "converge.sh": f.Shell()}
	if slices.Contains(size.peers, toolPuppet) {
		gen["site.pp"] = f.Puppet()
	}
	if slices.Contains(size.peers, toolAnsible) {
		gen["play.yml"] = f.Ansible()
	}
	if slices.Contains(size.peers, toolCFEngine) {
		gen["policy.cf"] = f.CFEngine()
	}
	paths := map[string]string{}
	for name, data := range gen {
		p, err := b.write(dir+name, data)
		if err != nil {
			s.tools = []*tool{{name: toolMgmt, notRun: "writing " + name + ": " + err.Error()}}
			return s
		}
		paths[name] = p
	}
	reset := func(ctx context.Context) error {
		if err := os.RemoveAll(f.Root); err != nil {
			return err
		}
		syncAll()
		return nil
	}
	three := func(name string, env []string, ok []int, argv ...string) *tool {
		t := b.peerTool(name, func(ctx context.Context) ([][]float64, error) {
			var out [][]float64
			for phase := 0; phase < 3; phase++ {
				if phase == 2 {
					if err := editFiles(f, 10); err != nil {
						return nil, err
					}
				}
				syncAll()
				d, err := timed(ctx, b.local, env, ok, argv...)
				if err != nil {
					return nil, err
				}
				if err := verifyFiles(f); err != nil {
					return nil, fmt.Errorf("after %s: %w", s.metrics[phase].name, err)
				}
				out = append(out, secs(d))
			}
			return out, nil
		})
		t.reset = reset
		return t
	}
	mg := three(toolMgmt, nil, nil, b.mgmtRun(b.mgmt, paths["graph.yaml"], b.path(dir+"mgmt-prefix"))...)
	mg.ref = true
	sh := three("shell (floor)", nil, nil, "bash", paths["converge.sh"])
	s.tools = []*tool{
		mg,
		three(toolPuppet, nil, puppetOK, b.puppetApply(paths["site.pp"], false)...),
		three(toolAnsible, nil, nil, ansiblePlaybook(paths["play.yml"])...),
		three(toolCFEngine, nil, nil, cfAgent(paths["policy.cf"])...),
		sh,
	}
	for _, t := range s.tools[1:4] {
		if t.notRun != "" || slices.Contains(size.peers, t.name) {
			continue
		}
		if at := b.sizesOf(t.name); len(at) > 0 {
			t.notRun = fmt.Sprintf("not run at this size, to keep the whole run within its time (it runs at %s files)", strings.Join(at, ", "))
		} else {
			t.notRun = fmt.Sprintf("not run in the %s subset (`make bench` runs it)", b.plan.name)
		}
	}
	return s
}

// editFiles overwrites k files spread over the tree with other content.
func editFiles(f desired.Files, k int) error {
	for j := 0; j < k; j++ {
		i := j * f.N / k
		if err := os.WriteFile(f.Path(i), []byte("edited by the benchmark\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// verifyFiles checks that every file of f holds its content.
func verifyFiles(f desired.Files) error {
	bad := 0
	var first error
	for i := 0; i < f.N; i++ {
		b, err := os.ReadFile(f.Path(i))
		if err == nil && !bytes.Equal(b, []byte(f.Content(i))) {
			err = fmt.Errorf("%s: wrong content %q", f.Path(i), b)
		}
		if err != nil {
			bad++
			if first == nil {
				first = err
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d files not as desired, e.g. %w", bad, f.N, first)
	}
	return nil
}

func (b *bench) scaleScenario() *scenario {
	s := &scenario{
		id:    "scale",
		title: "6. engine scale: memory per vertex",
		metrics: []metric{
			{name: "one-shot run", unit: "s"},
			{name: "peak memory (max RSS)", unit: "MB"},
			{name: "max RSS per vertex, above a one-vertex graph's", unit: "kB"},
		},
		runs: b.plan.scaleRuns,
		notes: []string{"mgmt only: `mgmt run --converged-timeout=0` of a graph of N vertices without edges " +
			"(parse, compile, start a goroutine per vertex, converge, stop): noop vertices, and file vertices " +
			"(a first apply of the tree of scenario 2, from nothing, every file written and fsynced). Peak memory is the process's maximum resident set " +
			"(getrusage's ru_maxrss, what GNU time's %M reports, measured by a small process of its own that starts mgmt), in MB of 10^6 bytes. " +
			"Per vertex: (max RSS − max RSS of a graph of one noop vertex, run just before) ÷ (N − 1), in kB of 10^3 bytes; " +
			"the same figure at every N means memory grows linearly with the graph."},
	}
	exe, exeErr := os.Executable()
	maxRSS := func(ctx context.Context, argv []string) (result, error) {
		if exeErr != nil {
			return result{}, exeErr
		}
		r, err := viaTimeit{base: b.local.base, helper: exe}.run(ctx, nil, argv...)
		if err != nil {
			return r, err
		}
		return r, r.ok()
	}
	one, err := b.write("scale/noops-1.yaml", desired.Noops(1))
	if err != nil {
		s.tools = []*tool{{name: toolMgmt, notRun: "writing noops-1.yaml: " + err.Error()}}
		return s
	}
	add := func(kind string, n int, graph []byte, root string) {
		t := &tool{name: fmt.Sprintf("mgmt, %d %s", n, kind)}
		p, err := b.write(fmt.Sprintf("scale/%s-%d.yaml", kind, n), graph)
		if err != nil {
			t.notRun = err.Error()
		}
		prefix := b.path("scale/mgmt-prefix")
		if root != "" {
			t.reset = func(ctx context.Context) error {
				if err := os.RemoveAll(root); err != nil {
					return err
				}
				syncAll()
				return nil
			}
		}
		t.trial = func(ctx context.Context) ([][]float64, error) {
			base, err := maxRSS(ctx, b.mgmtRun(b.mgmt, one, prefix))
			if err != nil {
				return nil, fmt.Errorf("one-vertex graph: %w", err)
			}
			r, err := maxRSS(ctx, b.mgmtRun(b.mgmt, p, prefix))
			if err != nil {
				return nil, err
			}
			perVertex := float64(r.maxRSS-base.maxRSS) * 1024 / 1e3 / float64(n-1)
			return [][]float64{secs(r.elapsed), {float64(r.maxRSS) * 1024 / 1e6}, {perVertex}}, nil
		}
		s.tools = append(s.tools, t)
	}
	for _, n := range b.plan.scaleSizes {
		add("noops", n, desired.Noops(n), "")
	}
	for _, n := range b.plan.scaleSizes {
		f := desired.Files{Root: b.path(fmt.Sprintf("scale/files-%d", n)), N: n}
		add("files", n, f.Mgmt(), f.Root)
	}
	return s
}
