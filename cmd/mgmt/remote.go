package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/agent"
	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/remote"
	"github.com/spf13/cobra"
)

// remoteFlags are `mgmt run`'s --remote* flags: run the graph on hosts
// reached over SSH instead of here.
type remoteFlags struct {
	targets    []string
	hostsFile  string
	parallel   int
	keys       []string
	knownHosts string
	acceptNew  bool
	sudo       bool
	keep       bool
	keepAlive  time.Duration
}

func (r *remoteFlags) define(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringArrayVar(&r.targets, "remote", nil, "run the graph on this host over SSH instead of here: ssh://user@host[:port] (repeatable)")
	f.StringVar(&r.hostsFile, "remote-hosts", "", "with --remote: a file of targets, one ssh://user@host[:port] a line (# comments)")
	f.IntVar(&r.parallel, "remote-parallel", 10, "run on at most N remote hosts at once")
	f.StringArrayVar(&r.keys, "remote-key", nil, "private key file to log in with (default: the SSH agent and ~/.ssh/id_*)")
	f.StringVar(&r.knownHosts, "remote-known-hosts", "", "known_hosts file the hosts' keys are checked against (default ~/.ssh/known_hosts)")
	f.BoolVar(&r.acceptNew, "remote-accept-new", false, "add the key of a host not yet in known_hosts (a changed key is always refused)")
	f.BoolVar(&r.sudo, "remote-sudo", false, "run the remote mgmt with sudo -n (a non-root login with passwordless sudo)")
	f.BoolVar(&r.keep, "remote-keep", false, "leave the copied binary and files on the hosts (for debugging; also lets the next run skip the binary's copy)")
	f.DurationVar(&r.keepAlive, "remote-keepalive", 5*time.Second, "check each SSH connection this often; a host silent for 3 checks is cut off")
	f.MarkHidden("remote-keepalive")
}

func (r *remoteFlags) wanted() bool { return len(r.targets) > 0 || r.hostsFile != "" }

// remoteRun is `mgmt run --remote ...`: it checks the graph, bundles it,
// starts (or uses) the cluster for exported resources, and runs on every
// host, printing a summary line per host at the end.
func (r *remoteFlags) run(cmd *cobra.Command, cfg agent.Config, convergedTimeout int, logLevel string, labelArgs []string, client clientFlags) error {
	log, err := newLogger(logLevel)
	if err != nil {
		return err
	}
	for _, f := range []string{"from-cluster", "hostname", "prefix", "graphviz", "graphviz-filter", "prometheus-listen", "cpu-profile", "no-watch",
		"no-server", "client-urls", "server-urls", "advertise-client-urls", "advertise-server-urls", "ideal-cluster-size"} {
		if cmd.Flags().Changed(f) {
			return &usageError{fmt.Sprintf("run: --%s does not go with --remote: each host runs a one-shot with its own name, facts and private directory (see docs/remote.md)", f)}
		}
	}
	if client.tlsFiles() != nil {
		return &usageError{"run: --etcd-ca/--etcd-cert/--etcd-key with --remote are not supported: the tunnel carries plain etcd traffic inside SSH"}
	}
	if r.parallel < 1 {
		return &usageError{"run: --remote-parallel must be at least 1"}
	}
	defUser := ""
	if u, err := user.Current(); err == nil {
		defUser = u.Username
	}
	var targets []remote.Target
	for _, s := range r.targets {
		t, err := remote.ParseTarget(s, defUser)
		if err != nil {
			return &usageError{"--remote: " + err.Error()}
		}
		targets = append(targets, t)
	}
	if r.hostsFile != "" {
		ts, err := remote.ReadHostsFile(r.hostsFile, defUser)
		if err != nil {
			return &usageError{"--remote-hosts: " + err.Error()}
		}
		targets = append(targets, ts...)
	}
	if len(targets) == 0 {
		return &usageError{"run: --remote-hosts names no host"}
	}
	seen := map[string]bool{}
	for _, t := range targets {
		if seen[t.Name()] {
			return &usageError{fmt.Sprintf("run: host %s given twice", t.Name())}
		}
		seen[t.Name()] = true
	}
	// Everything is checked before anything is copied anywhere.
	ctx, stop := signalContext(log)
	defer stop()
	// Compiling asks this host for automatic edges (PackageKit's file
	// lists, say); its warnings are about this host, not the targets,
	// which log their own: only errors are shown.
	yg, _, err := agent.Load(ctx, cfg.File, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return err
	}
	local, err := refer(cfg.File)
	if err != nil {
		return err
	}
	bundle, err := deploy.Bundle(deploy.BundleSpec{Graph: cfg.File, Local: local})
	if err != nil {
		return &usageError{err.Error()}
	}
	bin, err := os.Executable()
	if err != nil {
		return &failedError{fmt.Errorf("own binary: %w", err)}
	}
	if convergedTimeout < 0 {
		convergedTimeout = 5 // a remote run is a one-shot
	}
	args := []string{"--converged-timeout", strconv.Itoa(convergedTimeout), "--log-level", logLevel}
	if cfg.Noop {
		args = append(args, "--noop")
	}
	detailed, _ := cmd.Flags().GetBool("detailed-exitcodes")
	if detailed {
		args = append(args, "--detailed-exitcodes")
	}
	for _, l := range labelArgs {
		args = append(args, "--label", l)
	}
	if client.namespace != "" {
		args = append(args, "--etcd-namespace", client.namespace)
	}
	job := remote.Job{
		Binary: bin, Bundle: bundle, Args: args, Report: cfg.Report != "",
		Sudo: r.sudo, Keep: r.keep, KeepAlive: r.keepAlive, OK: []int{exitChanges},
		Log: os.Stderr, Logger: log,
	}
	if agent.NeedsCluster(yg) {
		addr, stopEtcd, err := controllerEtcd(ctx, client.seeds, log)
		if err != nil {
			return &failedError{err}
		}
		defer stopEtcd()
		job.Tunnel = func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		}
	}
	auth := &remote.Auth{Keys: r.keys, KnownHosts: r.knownHosts, AcceptNew: r.acceptNew, Logger: log}
	results := make([]remote.Result, len(targets))
	sem := make(chan struct{}, r.parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = remote.Result{Target: t, Err: &remote.Error{Host: t.Name(), Stage: remote.StageConnect, Err: fmt.Errorf("not started: %w", remote.ErrInterrupted)}}
				return
			}
			defer func() { <-sem }()
			results[i] = remote.Run(ctx, t, auth, job)
		})
	}
	wg.Wait()
	return summarize(os.Stderr, results, cfg.Report, cfg.Noop)
}

// controllerEtcd is the etcd the remote runs reach through their tunnels:
// the first of --seeds, or an embedded server on this host's loopback,
// which lives as long as the command.
func controllerEtcd(ctx context.Context, seeds []string, log *slog.Logger) (string, func(), error) {
	if len(seeds) > 0 {
		u, err := url.Parse(seeds[0])
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return "", nil, &usageError{fmt.Sprintf("--seeds %q with --remote: want http://host:port", seeds[0])}
		}
		return u.Host, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "mgmt-remote-etcd-")
	if err != nil {
		return "", nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	srv, err := etcd.StartServer(ctx, etcd.ServerConfig{
		Name: "controller", DataDir: dir,
		ClientURLs: []string{clientURL}, PeerURLs: []string{"http://127.0.0.1:" + strconv.Itoa(ports[1])},
		Logger: log.With("component", "etcd"),
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("etcd for the remote hosts' exports: %w", err)
	}
	log.Info("etcd for the remote hosts' exports", "listen", clientURL)
	return "127.0.0.1:" + strconv.Itoa(ports[0]), func() { srv.Stop(); os.RemoveAll(dir) }, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// summarize prints a line per host, writes the reports (FILE.HOST) and
// is a *failedError when any host failed.
func summarize(w io.Writer, results []remote.Result, report string, noop bool) error {
	failed, changed := 0, 0
	for _, r := range results {
		name := r.Target.Name()
		if r.Report != nil && report != "" {
			if err := os.WriteFile(report+"."+name, r.Report, 0o644); err != nil && r.Err == nil {
				r.Err = &remote.Error{Host: name, Stage: remote.StageFetch, Err: err}
			}
		}
		left := ""
		if r.Left != "" {
			left = fmt.Sprintf(" (left %s on the host: it could not be removed)", r.Left)
		}
		if r.Err == nil {
			note := ""
			if r.Status == exitChanges {
				changed++
				note = " (changed something)"
				if noop {
					note = " (would change something)"
				}
			}
			if !r.Copied {
				note += " (binary already there)"
			}
			fmt.Fprintf(w, "remote %s: ok in %.1fs%s%s\n", name, r.Duration.Seconds(), note, left)
			continue
		}
		failed++
		fmt.Fprintf(w, "remote %s: FAILED: %v%s\n", name, r.Err, left)
	}
	fmt.Fprintf(w, "remote: %d hosts, %d ok, %d failed\n", len(results), len(results)-failed, failed)
	if failed > 0 {
		return &failedError{fmt.Errorf("%d of %d remote hosts failed", failed, len(results))}
	}
	if changed > 0 {
		return &hostsChangedError{hosts: changed, noop: noop}
	}
	return nil
}

// hostsChangedError is --detailed-exitcodes' status 4 for remote runs:
// hosts, not resources, are counted.
type hostsChangedError struct {
	hosts int
	noop  bool
}

func (e *hostsChangedError) Error() string {
	verb := "changed something"
	if e.noop {
		verb = "would change something"
	}
	return fmt.Sprintf("%d remote host(s) %s (--detailed-exitcodes: exit status %d)", e.hosts, verb, exitChanges)
}

// As makes it a *changesError to exitCode: the same status 4.
func (e *hostsChangedError) As(target any) bool {
	if p, ok := target.(**changesError); ok {
		*p = &changesError{n: e.hosts, noop: e.noop}
		return true
	}
	return false
}

// remoteRunCmd is what the controller runs on each host: it unpacks the
// bundle in --dir and runs `mgmt run` with the arguments after --, as a
// child it stops when its standard input ends: the SSH session is gone
// (the controller was stopped or lost the connection), so the run dies
// with it instead of running on unseen.
func remoteRunCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "remote-run --dir DIR -- run ARGS...",
		Short:  "(internal) the target side of run --remote",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" || len(args) == 0 || args[0] != "run" {
				return &usageError{"remote-run: want --dir DIR -- run ARGS..."}
			}
			b, err := os.ReadFile(filepath.Join(dir, "bundle.tar.gz"))
			if err != nil {
				return &failedError{err}
			}
			if err := deploy.Unpack(b, filepath.Join(dir, "bundle")); err != nil {
				return &failedError{err}
			}
			self, err := os.Executable()
			if err != nil {
				return &failedError{err}
			}
			return childRun(self, args, os.Stdin)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the private directory the controller made")
	return cmd
}

// childRun runs self with args, stopping it (SIGTERM, then SIGKILL after
// 5 s) when stdin ends or this process is signalled. Its exit status
// becomes ours.
func childRun(self string, args []string, stdin io.Reader) error {
	c := exec.Command(self, args...)
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		return &failedError{err}
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, stdin); close(eof) }() // ends with the process
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-eof:
		err = stopChild(c, done)
	case <-sig:
		err = stopChild(c, done)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if code := ee.ExitCode(); code > 0 {
			os.Exit(code) // the run's own status, its message already printed
		}
		return &failedError{fmt.Errorf("mgmt run: %w", err)}
	}
	if err != nil {
		return &failedError{err}
	}
	return nil
}

func stopChild(c *exec.Cmd, done <-chan error) error {
	c.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		c.Process.Kill()
		return <-done
	}
}
