package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/mgmtconfig/mgmt/bench/desired"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// driftUnit is the service the svc drift measurement keeps running.
const driftUnit = "bench-drift.service"

const driftUnitText = `[Unit]
Description=mgmt benchmark: a service to stop

[Service]
ExecStart=/bin/sleep infinity
`

func (b *bench) driftScenario(ctx context.Context) *scenario {
	s := &scenario{
		id:    "drift",
		title: "4. drift repair while the agent runs",
		metrics: []metric{
			{name: "file edited → restored", unit: "s", latency: true},
			{name: "file removed → restored", unit: "s", latency: true},
			{name: "service stopped → running", unit: "s", latency: true},
			{name: "package removed → installed", unit: "s", latency: true},
		},
		runs: 1,
		notes: []string{fmt.Sprintf("`mgmt run` keeps running (no `--converged-timeout`) and the program changes what it manages behind its back, "+
			"one change at a time, then waits until it is as desired again. Files: a graph of %d files on this machine; "+
			"%d samples, alternately an overwrite and a removal of one file, timed from just before the change until the program, "+
			"woken by its own inotify watch, reads the desired content back. Service (in a test host): `systemctl stop` of a "+
			"`sleep infinity` unit over D-Bus, timed from the stop request until systemd reports it active again (%d samples). "+
			"Package (in a test host): `dpkg -r %s`, timed from the start of the removal until dpkg's database lists it installed again "+
			"(%d samples). Puppet, CFEngine and Ansible have no watcher: a change is repaired at their next run, whenever that is.",
			b.plan.driftFiles, b.plan.driftSamples, b.plan.svcSamples, testrepo.PkgA, b.plan.pkgSamples)},
	}
	file := &tool{name: toolMgmt, only: []int{0, 1}, ref: true, trial: b.fileDrift}
	svc := &tool{name: toolMgmt, only: []int{2}}
	pkg := &tool{name: toolMgmt, only: []int{3}}
	s.tools = []*tool{file, svc, pkg}

	// The svc and pkg measurements share one host.
	h, t, err := b.bootHost(ctx, "bench-drift")
	if err != nil {
		svc.notRun, pkg.notRun = "not run: "+err.Error(), "not run: "+err.Error()
	} else {
		s.teardown = func() {
			if err := h.Stop(); err != nil {
				b.log.Warn("stopping the test host", "err", err)
			}
		}
		svc.trial = func(ctx context.Context) ([][]float64, error) { return b.svcDrift(ctx, h, t) }
		pkg.trial = func(ctx context.Context) ([][]float64, error) { return b.pkgDrift(ctx, h, t) }
		for _, k := range []struct {
			tl    *tool
			kind  string
			graph []byte
		}{
			{svc, "svc", desired.Service(driftUnit)},
			{pkg, "pkg", desired.Packages{Names: []string{testrepo.PkgA}, AllowUnsupported: true}.Mgmt()},
		} {
			name := hostDir + "/drift-" + k.kind + ".yaml"
			err := h.WriteFile(name, k.graph, 0o644)
			if err == nil {
				err = mgmtKnows(ctx, t, hostMgmt, name)
			}
			if errors.Is(err, errPending) {
				k.tl.pending = fmt.Sprintf("the %s resource (resources/%s) is not in ./mgmt yet: %s", k.kind, k.kind, strings.TrimPrefix(err.Error(), errPending.Error()+": "))
			} else if err != nil {
				k.tl.notRun = "not run: " + err.Error()
			}
		}
	}

	interval := "no watcher; repairs at its next run"
	pu := b.peerTool(toolPuppet, nil)
	if pu.notRun == "" {
		if r, err := b.local.run(ctx, nil, "puppet", "config", "print", "runinterval", "--confdir", b.path("puppet/etc")); err == nil && r.ok() == nil {
			interval += fmt.Sprintf("; the agent's run interval: `puppet config print runinterval` = %s s", strings.TrimSpace(string(r.out)))
		}
		pu.notRun = interval
	}
	cf := b.peerTool(toolCFEngine, nil)
	if cf.notRun == "" {
		cf.notRun = "no watcher; repairs at the next cf-execd run (documented default schedule: every 5 minutes; not measured)"
	}
	an := b.peerTool(toolAnsible, nil)
	if an.notRun == "" {
		an.notRun = "no watcher and no agent: repairs only when someone runs the playbook again"
	}
	for _, p := range []*tool{pu, cf, an} {
		p.only = []int{0}
	}
	s.tools = append(s.tools, pu, cf, an)
	return s
}

// startLocal starts a long-running command on this machine, its output to
// logFile.
func (b *bench) startLocal(ctx context.Context, logFile string, argv ...string) (*exec.Cmd, error) {
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = b.local.base
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stopLocal ends a command started by startLocal: SIGTERM, then SIGKILL
// after 5 s.
func stopLocal(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// waitFor polls cond every step until it holds or ctx ends.
func waitFor(ctx context.Context, step time.Duration, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(step):
		}
	}
	return nil
}

func (b *bench) fileDrift(ctx context.Context) ([][]float64, error) {
	f := desired.Files{Root: b.path("drift/tree"), N: b.plan.driftFiles}
	graph, err := b.write("drift/files.yaml", f.Mgmt())
	if err != nil {
		return nil, err
	}
	os.RemoveAll(f.Root)
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logFile := b.path("drift/mgmt.log")
	cmd, err := b.startLocal(mctx, logFile, b.mgmt, "run", "--file", graph, "--no-watch", "--prefix", b.path("drift/mgmt-prefix"))
	if err != nil {
		return nil, err
	}
	defer stopLocal(cmd)
	fail := func(err error) ([][]float64, error) {
		log, _ := os.ReadFile(logFile)
		return nil, fmt.Errorf("%w; mgmt's log ends: %s", err, tail(log, 400))
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if err := waitFor(wctx, 20*time.Millisecond, func() bool { return verifyFiles(f) == nil }); err != nil {
		return fail(fmt.Errorf("the files were not created: %w", err))
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for _, d := range f.Dirs()[1:] {
		if err := w.Add(d); err != nil {
			return nil, err
		}
	}
	// restored waits until file i holds its content again, re-reading it
	// on each event for it (and every 100 ms, in case an event is missed).
	restored := func(ctx context.Context, i int) error {
		p, want := f.Path(i), []byte(f.Content(i))
		for {
			if got, err := os.ReadFile(p); err == nil && bytes.Equal(got, want) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not restored: %w", p, ctx.Err())
			case err := <-w.Errors:
				return fmt.Errorf("watching: %w", err)
			case <-w.Events:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	drain := func() {
		for {
			select {
			case <-w.Events:
			default:
				return
			}
		}
	}
	// The first change proves mgmt's watches are in place; it is not
	// counted.
	if err := os.WriteFile(f.Path(0), []byte("probe\n"), 0o644); err != nil {
		return nil, err
	}
	pctx, pcancel := context.WithTimeout(ctx, time.Minute)
	err = restored(pctx, 0)
	pcancel()
	if err != nil {
		return fail(err)
	}
	var edits, removals []float64
	for k := 0; k < b.plan.driftSamples; k++ {
		i := (k*7919 + 1) % f.N
		drain()
		start := time.Now()
		if k%2 == 0 {
			err = os.WriteFile(f.Path(i), []byte("drift\n"), 0o644)
		} else {
			err = os.Remove(f.Path(i))
		}
		if err != nil {
			return nil, err
		}
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		err = restored(sctx, i)
		d := time.Since(start)
		scancel()
		if err != nil {
			return fail(err)
		}
		if k%2 == 0 {
			edits = append(edits, d.Seconds())
		} else {
			removals = append(removals, d.Seconds())
		}
	}
	return [][]float64{edits, removals, nil, nil}, nil
}

func (b *bench) svcDrift(ctx context.Context, h *testhost.Host, t target) ([][]float64, error) {
	if err := h.WriteFile("/etc/systemd/system/"+driftUnit, []byte(driftUnitText), 0o644); err != nil {
		return nil, err
	}
	if _, err := h.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return nil, err
	}
	p, err := h.Spawn(ctx, hostMgmt, "run", "--file", hostDir+"/drift-svc.yaml", "--no-watch", "--prefix", "/root/mgmt-prefix-svc")
	if err != nil {
		return nil, err
	}
	defer p.Stop(5 * time.Second)
	conn, err := h.Systemd(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	active := func() bool {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		v, err := conn.GetUnitPropertyContext(qctx, driftUnit, "ActiveState")
		return err == nil && v.Value.Value() == "active"
	}
	fail := func(err error) ([][]float64, error) {
		return nil, fmt.Errorf("%w; mgmt's output ends: %s", err, tail([]byte(p.Output()), 400))
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := waitFor(wctx, 10*time.Millisecond, active); err != nil {
		return fail(fmt.Errorf("mgmt did not start %s: %w", driftUnit, err))
	}
	var samples []float64
	for k := 0; k < b.plan.svcSamples; k++ {
		start := time.Now()
		ch := make(chan string, 1)
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := conn.StopUnitContext(sctx, driftUnit, "replace", ch); err != nil {
			scancel()
			return fail(fmt.Errorf("stopping %s: %w", driftUnit, err))
		}
		select {
		case <-ch:
		case <-sctx.Done():
		}
		err := waitFor(sctx, time.Millisecond, active)
		d := time.Since(start)
		scancel()
		if err != nil {
			return fail(fmt.Errorf("%s not running again: %w", driftUnit, err))
		}
		samples = append(samples, d.Seconds())
	}
	return [][]float64{nil, nil, samples, nil}, nil
}

func (b *bench) pkgDrift(ctx context.Context, h *testhost.Host, t target) ([][]float64, error) {
	p, err := h.Spawn(ctx, hostMgmt, "run", "--file", hostDir+"/drift-pkg.yaml", "--no-watch", "--prefix", "/root/mgmt-prefix-pkg")
	if err != nil {
		return nil, err
	}
	defer p.Stop(5 * time.Second)
	isInstalled := func() bool {
		st, err := h.ReadFile("/var/lib/dpkg/status")
		return err == nil && dpkgStatusInstalled(st, testrepo.PkgA)
	}
	fail := func(err error) ([][]float64, error) {
		return nil, fmt.Errorf("%w; mgmt's output ends: %s", err, tail([]byte(p.Output()), 400))
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if err := waitFor(wctx, 20*time.Millisecond, isInstalled); err != nil {
		return fail(fmt.Errorf("mgmt did not install %s: %w", testrepo.PkgA, err))
	}
	var samples []float64
	for k := 0; k < b.plan.pkgSamples; k++ {
		start := time.Now()
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		// dpkg may find its lock held by PackageKit's own reading of the
		// database: try again until the removal happens.
		var rerr error
		for {
			if _, rerr = h.Run(sctx, "dpkg", "-r", testrepo.PkgA); rerr == nil || sctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if rerr != nil {
			scancel()
			return fail(rerr)
		}
		err := waitFor(sctx, 5*time.Millisecond, isInstalled)
		d := time.Since(start)
		scancel()
		if err != nil {
			return fail(fmt.Errorf("%s not installed again: %w", testrepo.PkgA, err))
		}
		samples = append(samples, d.Seconds())
	}
	return [][]float64{nil, nil, nil, samples}, nil
}

// dpkgStatusInstalled reports whether dpkg's status file lists pkg as
// installed.
func dpkgStatusInstalled(status []byte, pkg string) bool {
	for _, stanza := range bytes.Split(status, []byte("\n\n")) {
		var name, st string
		for _, line := range strings.Split(string(stanza), "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "Status: "); ok {
				st = v
			}
		}
		if name == pkg {
			return st == "install ok installed"
		}
	}
	return false
}
