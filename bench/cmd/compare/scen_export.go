package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/bench/desired"
)

// exportFlags are the `mgmt run` flags the exported-resources scenario
// needs (see docs/cluster.md).
var exportFlags = []string{"--seeds", "--no-server", "--client-urls", "--server-urls"}

func (b *bench) exportScenario(ctx context.Context) *scenario {
	s := &scenario{
		id:      "export",
		title:   "5. exported resources",
		metrics: []metric{},
		runs:    b.plan.exportRuns,
		notes: []string{"mgmt only: N agents on this machine (loopback), the first with the embedded etcd server, the others " +
			"its clients (`--seeds URL --no-server`); each exports one file and collects every other agent's into a directory of its own. " +
			"Timed from the start of the last agent until every agent holds every other agent's file. " +
			"Puppet's exported resources need a PuppetDB server and one agent run per host after every host has exported, " +
			"so a host sees the others' resources only at its next run."},
	}
	for _, n := range b.plan.exportSizes {
		s.metrics = append(s.metrics, metric{name: fmt.Sprintf("%d agents: last start → all files everywhere", n), unit: "s"})
	}
	t := &tool{name: toolMgmt, ref: true}
	s.tools = []*tool{t}
	r, err := b.local.run(ctx, nil, b.mgmt, "run", "--help")
	if err != nil {
		t.notRun = "not run: " + err.Error()
		return s
	}
	var miss []string
	for _, f := range exportFlags {
		if !strings.Contains(string(r.out), f) {
			miss = append(miss, f)
		}
	}
	if len(miss) > 0 {
		t.pending = "the etcd integration of `mgmt run` (issue 7) is not in ./mgmt yet: `mgmt run --help` has no " + strings.Join(miss, ", ")
		return s
	}
	exportRun := 0 // each run has directories of its own
	t.trial = func(ctx context.Context) ([][]float64, error) {
		var out [][]float64
		for _, n := range b.plan.exportSizes {
			exportRun++
			d, err := b.exportOnce(ctx, n, exportRun)
			if err != nil {
				return nil, fmt.Errorf("%d agents: %w", n, err)
			}
			out = append(out, secs(d))
		}
		return out, nil
	}
	return s
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// exportOnce starts n agents exchanging files and returns the time from
// the last start until every agent holds every other agent's file.
func (b *bench) exportOnce(ctx context.Context, n, run int) (time.Duration, error) {
	dir := b.path(fmt.Sprintf("export/%d-%d", n, run))
	x := desired.Export{Dir: dir, N: n}
	cport, err := freePort()
	if err != nil {
		return 0, err
	}
	sport, err := freePort()
	if err != nil {
		return 0, err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", cport)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var agents []*exec.Cmd
	defer func() {
		for _, a := range agents {
			stopLocal(a)
		}
	}()
	var last time.Time
	for i := 0; i < n; i++ {
		graph, err := b.write(fmt.Sprintf("export/%d-%d/h%d.yaml", n, run, i), x.Mgmt(i))
		if err != nil {
			return 0, err
		}
		argv := []string{b.mgmt, "run", "--file", graph, "--no-watch", "--hostname", fmt.Sprintf("h%d", i),
			"--prefix", fmt.Sprintf("%s/prefix-h%d", dir, i)}
		if i == 0 {
			argv = append(argv, "--client-urls", clientURL, "--server-urls", fmt.Sprintf("http://127.0.0.1:%d", sport))
		} else {
			argv = append(argv, "--seeds", clientURL, "--no-server")
		}
		last = time.Now()
		cmd, err := b.startLocal(ctx, fmt.Sprintf("%s/h%d.log", dir, i), argv...)
		if err != nil {
			return 0, err
		}
		agents = append(agents, cmd)
		if i == 0 {
			// The others need the server: wait until it listens.
			if err := waitFor(ctx, 10*time.Millisecond, func() bool {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cport), time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			}); err != nil {
				return 0, fmt.Errorf("the first agent's etcd server: %w", err)
			}
		}
	}
	all := func() bool {
		for i := 0; i < n; i++ {
			for _, p := range x.Collected(i) {
				if _, err := os.Stat(p); err != nil {
					return false
				}
			}
		}
		return true
	}
	if err := waitFor(ctx, 5*time.Millisecond, all); err != nil {
		log, _ := os.ReadFile(fmt.Sprintf("%s/h%d.log", dir, n-1))
		return 0, errors.Join(fmt.Errorf("not every file reached every agent: %w", err), fmt.Errorf("last agent's log ends: %s", tail(log, 400)))
	}
	return time.Since(last), nil
}
