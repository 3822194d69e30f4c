package etcd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mgmtconfig/mgmt/etcd/memberconf"
)

// processStopTimeout bounds a member process's clean stop before it is
// killed.
const processStopTimeout = 15 * time.Second

// startServerProcess runs the server as a child process of the mgmt-etcd program
// bin (cmd/mgmt-etcd): its configuration as JSON on stdin, its readiness as
// one JSON line on stdout, its logs as JSON lines on stderr, re-logged to
// cfg.Logger with a member attribute. The child stops when its stdin closes
// or at SIGTERM, and gets SIGTERM if this process dies (Pdeathsig).
func startServerProcess(ctx context.Context, cfg ServerConfig, mc memberconf.Config, bin string) (*Server, error) {
	conf, err := json.Marshal(mc)
	if err != nil {
		return nil, fmt.Errorf("etcd server %q: %w", cfg.Name, err)
	}
	cmd := &exec.Cmd{
		Path: bin,
		Args: []string{"mgmt-etcd"},
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGTERM,
			Setpgid:   true, // a ^C at the terminal is the agent's to handle, in order
		},
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("etcd server %q: %w", cfg.Name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("etcd server %q: %w", cfg.Name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("etcd server %q: %w", cfg.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("etcd server %q: run %s: %w", cfg.Name, bin, err)
	}
	// The child reads its configuration before anything else: a write
	// error means it already died, which Wait reports.
	stdin.Write(append(conf, '\n'))

	p := &serverProcess{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan memberconf.Ready, 1)
	var readers sync.WaitGroup
	readers.Go(func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var r memberconf.Ready
		if sc.Scan() {
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = memberconf.Ready{Error: fmt.Sprintf("unreadable readiness %q: %v", sc.Text(), err)}
			}
			ready <- r
		}
		io.Copy(io.Discard, stdout)
	})
	readers.Go(func() { relayLogs(stderr, cfg.Logger, cfg.Name) })
	go func() {
		readers.Wait() // the pipes end when the child exits; Wait closes them
		p.err = cmd.Wait()
		close(p.done)
	}()

	s := &Server{done: p.done, stop: p.stop, name: cfg.Name, tls: cfg.TLS, pid: cmd.Process.Pid}
	// The child applies StartTimeout itself; this only guards against a
	// child that hangs.
	timer := time.NewTimer(mc.StartTimeout + processStopTimeout)
	defer timer.Stop()
	select {
	case r := <-ready:
		if r.Error == "" {
			s.endpoints = r.Endpoints
			return s, nil
		}
		err = startError(r)
	case <-p.done:
		err = fmt.Errorf("etcd server %q: mgmt-etcd exited before it was ready: %v", cfg.Name, p.err)
	case <-timer.C:
		err = fmt.Errorf("etcd server %q: mgmt-etcd not ready after %v: %w", cfg.Name, mc.StartTimeout, ErrNotReady)
	case <-ctx.Done():
		err = fmt.Errorf("etcd server %q: %w", cfg.Name, ctx.Err())
	}
	s.Stop()
	return nil, err
}

// startError is the error a member process reported.
func startError(r memberconf.Ready) error {
	switch r.Kind {
	case memberconf.KindNotReady:
		return fmt.Errorf("%w: %s", ErrNotReady, r.Error)
	case memberconf.KindAddrInUse:
		return fmt.Errorf("%s: %w", r.Error, syscall.EADDRINUSE)
	}
	return errors.New(r.Error)
}

// serverProcess is a running mgmt-etcd child.
type serverProcess struct {
	cmd   *exec.Cmd
	stdin io.Closer
	done  chan struct{} // closed once the child has exited and its output been read
	err   error         // how it exited; set before done closes
}

// stop asks the child to stop (its stdin closes, SIGTERM), waits for it up
// to processStopTimeout, then kills it and waits for it.
func (p *serverProcess) stop() {
	p.stdin.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(processStopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	p.cmd.Process.Kill()
	<-p.done
}

// relayLogs re-logs the JSON lines (slog's JSON handler) a member process
// writes on r to l with member=name, at their level; other lines (a panic)
// become warnings. It returns at the end of r.
func relayLogs(r io.Reader, l *slog.Logger, name string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l == nil {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				l.Warn("etcd member output", "member", name, "line", line)
			}
			continue
		}
		var lvl slog.Level
		if s, ok := rec[slog.LevelKey].(string); !ok || lvl.UnmarshalText([]byte(s)) != nil {
			lvl = slog.LevelWarn
		}
		msg, _ := rec[slog.MessageKey].(string)
		delete(rec, slog.TimeKey)
		delete(rec, slog.LevelKey)
		delete(rec, slog.MessageKey)
		keys := make([]string, 0, len(rec))
		for k := range rec {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]slog.Attr, 0, len(keys)+1)
		attrs = append(attrs, slog.String("member", name))
		for _, k := range keys {
			attrs = append(attrs, slog.Any(k, rec[k]))
		}
		l.LogAttrs(context.Background(), lvl, msg, attrs...)
	}
	io.Copy(io.Discard, r)
}
