package remote

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Stage is where a host's run failed.
type Stage string

// The stages, in order; each names a failure the way the summary says it.
const (
	StageConnect Stage = "unreachable"
	StageHostKey Stage = "refused host key"
	StageLogin   Stage = "refused login"
	StageCopy    Stage = "copy cut off"
	StageRun     Stage = "run failed"
	StageFetch   Stage = "report not fetched"
)

// Error is one host's failure.
type Error struct {
	Host  string
	Stage Stage
	Err   error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s: %v", e.Host, e.Stage, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// ExitError is a remote `mgmt run` that ended with a non-zero status; -1
// when the session ended without one (the connection dropped, the process
// was killed).
type ExitError struct{ Status int }

func (e *ExitError) Error() string {
	if e.Status < 0 {
		return "the remote process ended without an exit status (connection lost or process killed)"
	}
	return fmt.Sprintf("remote mgmt exited with status %d", e.Status)
}

// ErrInterrupted is a run stopped because the controller was (Ctrl-C).
var ErrInterrupted = errors.New("stopped by the controller")

// Job is what to run on every host.
type Job struct {
	// Binary is this mgmt's own executable, copied to each host.
	Binary string
	// Bundle is the graph's bundle (deploy.Bundle).
	Bundle []byte
	// Args are the `mgmt run` arguments after those the job sets itself
	// (--file, --prefix, --report, --no-watch, the cluster's).
	Args []string
	// Report asks each host for its report; Result.Report holds it.
	Report bool
	// Tunnel, when set, is dialled for every connection the remote run
	// makes to <dir>/etcd.sock: the cluster's etcd, reached through the
	// host's own SSH connection. The run is then given that socket as
	// --seeds, with --no-server.
	Tunnel func(ctx context.Context) (net.Conn, error)
	// OK lists the exit statuses besides 0 that are a success (mgmt run's
	// 4 under --detailed-exitcodes: something changed, or would have).
	OK []int
	// Sudo runs the remote command with `sudo -n` (a non-root login).
	Sudo bool
	// Keep leaves the private directory (and a cached binary) on the host.
	Keep bool
	// TmpDir is the parent of the private directory (default /tmp).
	TmpDir string
	// KeepAlive is how often the connection is checked; a host that does
	// not answer within 3 intervals is cut off (default 5 s).
	KeepAlive time.Duration
	// DialTimeout bounds the TCP connect and the SSH handshake (10 s).
	DialTimeout time.Duration
	// ReplyTimeout bounds the wait for the host's answer to each channel
	// open and to the exec and sftp requests (30 s): a host that answers
	// keepalives and nothing else fails instead of holding the run.
	ReplyTimeout time.Duration
	// Log receives the remote log, each line prefixed with "HOST: ".
	Log io.Writer
	// Logger receives the controller's own notes on each host.
	Logger *slog.Logger
}

// Result is one host's outcome.
type Result struct {
	Target   Target
	Err      error  // an *Error, nil when the run succeeded
	Dir      string // the private directory on the host
	Copied   bool   // the binary was copied (not found already there)
	Report   []byte // the run's --report, when asked for and written
	Left     string // the private directory, when it could not be removed
	Status   int    // the remote run's exit status, when it was one of Job.OK
	Duration time.Duration
}

// Run runs job on t: connect, copy, run, fetch the report, clean up. It
// returns when everything it started on the host has ended; cleanup runs
// even after ctx ends (bounded), so that a Ctrl-C leaves nothing behind.
func Run(ctx context.Context, t Target, auth *Auth, job Job) (res Result) {
	start := time.Now()
	res.Target = t
	log := job.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("host", t.Name())
	fail := func(st Stage, err error) Result {
		res.Err = &Error{Host: t.Name(), Stage: st, Err: err}
		res.Duration = time.Since(start)
		return res
	}
	c, err := dial(ctx, t, auth, job)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			res.Err, res.Duration = e, time.Since(start)
			return res
		}
		return fail(StageConnect, err)
	}
	defer c.Close()
	s := &session{t: t, job: job, c: c, log: log, gone: make(chan struct{})}
	go func() { c.Wait(); close(s.gone) }()
	kctx, stopKeep := context.WithCancel(context.Background())
	kdone := make(chan struct{})
	go func() { defer close(kdone); s.keepAlive(kctx) }()
	defer func() { stopKeep(); c.Close(); <-kdone; <-s.gone }()

	defer func() { res.Left = s.cleanup() }()
	if err := s.copy(ctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
		return fail(StageCopy, err)
	}
	res.Dir, res.Copied = s.dir, s.copied
	var ee *ExitError
	if err := s.run(ctx); errors.As(err, &ee) && slices.Contains(job.OK, ee.Status) {
		res.Status = ee.Status
	} else if err != nil {
		return fail(StageRun, err)
	}
	if job.Report {
		b, err := s.fetch(s.dir + "/report.json")
		if err != nil {
			return fail(StageFetch, err)
		}
		res.Report = b
	}
	res.Duration = time.Since(start)
	return res
}

// dial connects and logs in; its errors are *Error with the stage.
func dial(ctx context.Context, t Target, auth *Auth, job Job) (*ssh.Client, error) {
	timeout := job.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	signers, closeAgent, err := auth.signers()
	if err != nil {
		return nil, &Error{Host: t.Name(), Stage: StageLogin, Err: err}
	}
	defer closeAgent()
	var checked bool
	hk, algos, err := auth.hostKey(t, &checked)
	if err != nil {
		return nil, &Error{Host: t.Name(), Stage: StageHostKey, Err: err}
	}
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hk,
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.Addr())
	if err != nil {
		return nil, &Error{Host: t.Name(), Stage: StageConnect, Err: err}
	}
	// The handshake is bounded too: a host that accepts and says nothing.
	stop := context.AfterFunc(dctx, func() { conn.SetDeadline(time.Now()) })
	cc, chans, reqs, err := ssh.NewClientConn(conn, t.Addr(), cfg)
	stop()
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		switch {
		case errors.As(err, &hke):
			return nil, &Error{Host: t.Name(), Stage: StageHostKey, Err: hke}
		case checked:
			// The host key was accepted: what failed is the login.
			return nil, &Error{Host: t.Name(), Stage: StageLogin, Err: err}
		default:
			return nil, &Error{Host: t.Name(), Stage: StageConnect, Err: err}
		}
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// session is one host's connection and what was put there.
type session struct {
	t      Target
	job    Job
	c      *ssh.Client
	log    *slog.Logger
	sftp   *sftp.Client
	dir    string // the private directory; "" until made
	bin    string // the binary to run
	copied bool
	gone   chan struct{} // closed once the connection has ended
	mu     sync.Mutex    // guards lost
	lost   error         // why the keepalive cut the connection
}

// errEnded is an operation refused because the connection has ended.
var errEnded = errors.New("the connection has ended")

// newSession opens a session channel; it gives up when ctx ends, when the
// connection does, or when the host has not answered within the job's
// ReplyTimeout. x/crypto/ssh drops the channels of an ended connection
// before it refuses new ones, and a channel opened between the two is
// never answered (golang/go#26643 has the same wait): that is what a
// cleanup right after a host died during its run met, and it waited for
// good, keepalives or not. Such a NewSession is left behind, the one
// goroutine Run does not join; it closes what it opens if it ever returns.
func (s *session) newSession(ctx context.Context) (*ssh.Session, error) {
	actx, cancel := s.answerCtx(ctx, "a session")
	defer cancel()
	type opened struct {
		ss  *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	taken := make(chan struct{})
	go func() {
		ss, err := s.c.NewSession()
		select {
		case ch <- opened{ss, err}:
		case <-taken:
			if ss != nil {
				ss.Close()
			}
		}
	}()
	select {
	case o := <-ch:
		return o.ss, o.err
	case <-s.gone:
	case <-actx.Done():
	}
	close(taken)
	// It may have opened meanwhile: that one is closed by the goroutine.
	if actx.Err() != nil {
		return nil, unanswered(ctx, actx)
	}
	return nil, errEnded
}

// answerCtx is ctx bounded by the job's ReplyTimeout, for a wait on one
// answer of the host (what names it).
func (s *session) answerCtx(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	d := s.job.ReplyTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: no answer to %s within %v", ErrNoAnswer, what, d))
}

// ErrNoAnswer is a host that did not answer a request in time.
var ErrNoAnswer = errors.New("the host does not answer")

// unanswered is why actx, from answerCtx(ctx), ended: ctx's own error
// (Ctrl-C), or the host's silence.
func unanswered(ctx, actx context.Context) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return context.Cause(actx)
}

// keepAlive closes the connection when the host stops answering, so that
// a copy or a run on a cut link fails instead of waiting on TCP.
func (s *session) keepAlive(ctx context.Context) {
	every := s.job.KeepAlive
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := s.c.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-ctx.Done():
			return
		case err := <-reply:
			if err == nil {
				continue
			}
			s.setLost(err)
		case <-time.After(3 * every):
			s.setLost(fmt.Errorf("no answer to keepalives for %v", 3*every))
		}
		s.c.Close()
		return
	}
}

func (s *session) setLost(err error) {
	s.mu.Lock()
	s.lost = err
	s.mu.Unlock()
}

// why adds the keepalive's reason to an error seen on a lost connection.
func (s *session) why(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost != nil {
		return fmt.Errorf("%w (connection lost: %v)", err, s.lost)
	}
	return err
}

// copy makes the private directory and puts the binary and the bundle in it.
func (s *session) copy(ctx context.Context) error {
	var err error
	if s.sftp, err = s.newSFTP(ctx); err != nil {
		return s.why(fmt.Errorf("sftp: %w", err))
	}
	// Ctrl-C ends the transfer, not the connection: cleanup needs it.
	stop := context.AfterFunc(ctx, func() { s.sftp.Close() })
	defer stop()
	parent := s.job.TmpDir
	if parent == "" {
		parent = "/tmp"
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	dir := path.Join(parent, "mgmt-remote-"+hex.EncodeToString(rnd[:]))
	// Mkdir fails on anything already there, a link included; the
	// directory is private before anything goes in.
	if err := s.sftp.Mkdir(dir); err != nil {
		return s.why(fmt.Errorf("mkdir %s: %w", dir, err))
	}
	s.dir = dir
	if err := s.sftp.Chmod(dir, 0o700); err != nil {
		return s.why(fmt.Errorf("chmod %s: %w", dir, err))
	}
	if err := s.putBinary(ctx); err != nil {
		return err
	}
	if err := s.put(dir+"/bundle.tar.gz", strings.NewReader(string(s.job.Bundle)), 0o600); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// newSFTP starts the sftp subsystem on a session of its own.
func (s *session) newSFTP(ctx context.Context) (*sftp.Client, error) {
	ss, err := s.newSession(ctx)
	if err != nil {
		return nil, err
	}
	// A request or the sftp handshake a host never answers waits for
	// good, keepalives answered or not: Ctrl-C or the reply timeout
	// closes the session, which the host's end of the channel answers.
	actx, cancel := s.answerCtx(ctx, "the sftp subsystem request")
	defer cancel()
	stop := context.AfterFunc(actx, func() { ss.Close() })
	defer stop()
	fail := func(err error) (*sftp.Client, error) {
		ss.Close()
		if actx.Err() != nil {
			return nil, unanswered(ctx, actx)
		}
		return nil, err
	}
	w, err := ss.StdinPipe()
	if err != nil {
		return fail(err)
	}
	r, err := ss.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := ss.RequestSubsystem("sftp"); err != nil {
		return fail(err)
	}
	c, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		return fail(err)
	}
	if !stop() {
		c.Close() // Ctrl-C, or the host's silence, came as it started
		return fail(nil)
	}
	return c, nil
}

// putBinary copies the binary, unless the cache (~/.cache/mgmt-remote,
// kept by an earlier --remote-keep) holds one with the same sha256.
func (s *session) putBinary(ctx context.Context) error {
	f, err := os.Open(s.job.Binary)
	if err != nil {
		return fmt.Errorf("the binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("the binary: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	home, err := s.sftp.Getwd()
	if err != nil {
		return s.why(fmt.Errorf("home directory: %w", err))
	}
	cacheDir := path.Join(home, ".cache", "mgmt-remote")
	cached := path.Join(cacheDir, "mgmt-"+sum[:32])
	if out, err := s.output(ctx, "sha256sum -- "+shellQuote(cached)); err == nil && strings.HasPrefix(out, sum+" ") {
		s.bin = cached
		s.log.Debug("binary already there", "path", cached)
		return nil
	}
	dst := s.dir + "/mgmt"
	if s.job.Keep {
		if err := s.sftp.MkdirAll(cacheDir); err != nil {
			return s.why(fmt.Errorf("mkdir %s: %w", cacheDir, err))
		}
		if err := s.sftp.Chmod(cacheDir, 0o700); err != nil {
			return s.why(fmt.Errorf("chmod %s: %w", cacheDir, err))
		}
		dst = cached
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.put(dst, f, 0o700); err != nil {
		return err
	}
	s.bin, s.copied = dst, true
	return nil
}

// put writes a file through a temporary name, so that a cut copy never
// leaves a file that looks whole.
func (s *session) put(dst string, r io.Reader, mode os.FileMode) error {
	tmp := dst + ".part"
	f, err := s.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return s.why(fmt.Errorf("create %s: %w", tmp, err))
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return s.why(fmt.Errorf("chmod %s: %w", tmp, err))
	}
	if _, err := f.ReadFrom(r); err != nil {
		f.Close()
		return s.why(fmt.Errorf("write %s: %w", dst, err))
	}
	if err := f.Close(); err != nil {
		return s.why(fmt.Errorf("write %s: %w", dst, err))
	}
	if err := s.sftp.PosixRename(tmp, dst); err != nil {
		return s.why(fmt.Errorf("rename %s: %w", dst, err))
	}
	return nil
}

// output runs a short command and returns its standard output.
func (s *session) output(ctx context.Context, cmd string) (string, error) {
	ss, err := s.newSession(ctx)
	if err != nil {
		return "", err
	}
	defer ss.Close()
	stop := context.AfterFunc(ctx, func() { ss.Close() })
	defer stop()
	b, err := ss.Output(cmd)
	return string(b), err
}

func (s *session) sudo() string {
	if s.job.Sudo {
		return "sudo -n "
	}
	return ""
}

// run runs `mgmt remote-run` there and streams its output. The remote
// process watches its standard input, which ends with the session: it
// stops its run when the controller goes away (see cmd/mgmt remote-run).
func (s *session) run(ctx context.Context) error {
	ss, err := s.newSession(ctx)
	if err != nil {
		return s.why(fmt.Errorf("session: %w", err))
	}
	defer ss.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.job.Tunnel != nil {
		l, err := s.c.ListenUnix(s.dir + "/etcd.sock")
		if err != nil {
			return s.why(fmt.Errorf("tunnel to etcd (streamlocal forwarding; sshd's AllowStreamLocalForwarding): %w", err))
		}
		defer l.Close()
		tctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Go(func() { s.serveTunnel(tctx, l) })
	}
	stdin, err := ss.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := ss.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := ss.StderrPipe()
	if err != nil {
		return err
	}
	args := []string{s.bin, "remote-run", "--dir", s.dir, "--"}
	args = append(args, s.runArgs()...)
	var q []string
	for _, a := range args {
		q = append(q, shellQuote(a))
	}
	cmd := s.sudo() + strings.Join(q, " ")
	s.log.Debug("running", "cmd", cmd)
	// Ctrl-C before the host answers the exec: nothing runs yet to be
	// told to stop, the session is closed (the exec may never be answered).
	actx, cancel := s.answerCtx(ctx, "the exec of remote-run")
	defer cancel()
	stopStart := context.AfterFunc(actx, func() { ss.Close() })
	err = ss.Start(cmd)
	if !stopStart() {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
		}
		return s.why(context.Cause(actx))
	}
	if err != nil {
		return s.why(fmt.Errorf("start: %w", err))
	}
	var lines sync.WaitGroup
	lines.Go(func() { s.prefix(stdout) })
	lines.Go(func() { s.prefix(stderr) })
	// Ctrl-C: closing stdin tells the remote run to stop; it has 10 s
	// before the session is closed under it.
	done := make(chan struct{})
	wg.Go(func() {
		select {
		case <-done:
		case <-ctx.Done():
			stdin.Close()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				ss.Close()
			}
		}
	})
	lines.Wait()
	err = ss.Wait()
	close(done)
	var ee *ssh.ExitError
	switch {
	case ctx.Err() != nil:
		// However the remote run ended, it was told to stop.
		return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &ExitError{Status: ee.ExitStatus()}
	default:
		return s.why(&ExitError{Status: -1})
	}
}

// runArgs are the arguments of the remote `mgmt run`.
func (s *session) runArgs() []string {
	a := []string{"run", "--file", s.dir + "/bundle/graph.yaml", "--no-watch", "--prefix", s.dir + "/state"}
	if s.job.Report {
		a = append(a, "--report", s.dir+"/report.json")
	}
	if s.job.Tunnel != nil {
		a = append(a, "--no-server", "--seeds", "unix://"+s.dir+"/etcd.sock")
	}
	return append(a, s.job.Args...)
}

// serveTunnel carries each connection to the remote socket to the
// controller's etcd.
func (s *session) serveTunnel(ctx context.Context, l net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		rc, err := l.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer rc.Close()
			lc, err := s.job.Tunnel(ctx)
			if err != nil {
				s.log.Warn("tunnel: etcd unreachable from the controller", "err", err)
				return
			}
			defer lc.Close()
			cstop := context.AfterFunc(ctx, func() { rc.Close(); lc.Close() })
			defer cstop()
			var pipes sync.WaitGroup
			pipes.Go(func() { io.Copy(lc, rc); closeWrite(lc) })
			pipes.Go(func() { io.Copy(rc, lc); closeWrite(rc) })
			pipes.Wait()
		})
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// prefix copies r to the job's log a line at a time, each line prefixed
// with the host's name; lines of different hosts never mix.
func (s *session) prefix(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		writeLine(s.job.Log, s.t.Name()+": "+sc.Text()+"\n")
	}
	io.Copy(io.Discard, r)
}

var logMu sync.Mutex // guards writes of whole lines to any job's Log

func writeLine(w io.Writer, line string) {
	if w == nil {
		return
	}
	logMu.Lock()
	defer logMu.Unlock()
	io.WriteString(w, line)
}

func (s *session) fetch(p string) ([]byte, error) {
	f, err := s.sftp.Open(p)
	if err != nil {
		return nil, s.why(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	return b, s.why(err)
}

// cleanup removes the private directory, on a fresh, bounded context: the
// run's may have ended (Ctrl-C). With sudo it removes it as root, since the
// run made files there as root.
// It returns the directory when it is still there.
func (s *session) cleanup() string {
	if s.dir == "" {
		return ""
	}
	if s.job.Keep {
		s.log.Info("kept on the host", "dir", s.dir)
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := s.output(ctx, s.sudo()+"rm -rf -- "+shellQuote(s.dir)); err != nil {
		s.log.Warn("could not remove the private directory", "dir", s.dir, "err", s.why(err))
		return s.dir
	}
	return ""
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
