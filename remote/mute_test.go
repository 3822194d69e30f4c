package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"golang.org/x/crypto/ssh"
)

// clientFor is what Run needs to reach s: a target, a key, a fake binary.
func clientFor(t *testing.T, s *dyingServer) (Target, *Auth, Job) {
	t.Helper()
	dir := t.TempDir()
	_, ck, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := ssh.MarshalPrivateKey(ck, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id")
	bin := filepath.Join(dir, "mgmt")
	if err := os.WriteFile(key, pem.EncodeToMemory(pb), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("not really mgmt"), 0o700); err != nil {
		t.Fatal(err)
	}
	auth := &Auth{Keys: []string{key}, KnownHosts: filepath.Join(dir, "known_hosts"), AcceptNew: true}
	host, port, _ := net.SplitHostPort(s.l.Addr().String())
	tg, err := ParseTarget("root@"+net.JoinHostPort(host, port), "root")
	if err != nil {
		t.Fatal(err)
	}
	return tg, auth, Job{Binary: bin, Bundle: []byte("bundle"), TmpDir: s.home, KeepAlive: time.Second}
}

// runCancelled runs against s, cancels after d (Ctrl-C), and wants Run
// back within 15 s of that.
func runCancelled(t *testing.T, s *dyingServer, d time.Duration) Result {
	t.Helper()
	tg, auth, job := clientFor(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Result, 1)
	go func() { done <- Run(ctx, tg, auth, job) }()
	time.Sleep(d)
	cancel()
	select {
	case res := <-done:
		return res
	case <-time.After(15 * time.Second):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("Run has not returned 15 s after Ctrl-C:\n%s", buf)
	}
	return Result{}
}

// Ctrl-C while the host does not answer the sftp subsystem request (it
// answers keepalives): Run returns, interrupted at the copy.
func TestCtrlCWhileSubsystemUnanswered(t *testing.T) {
	leakcheck.Check(t, 5*time.Second)
	s := newServer(t, func(typ, arg string) bool { return typ == "subsystem" })
	res := runCancelled(t, s, 500*time.Millisecond)
	var e *Error
	if !errors.As(res.Err, &e) || e.Stage != StageCopy || !errors.Is(res.Err, ErrInterrupted) {
		t.Fatalf("%v, want an interrupted %q failure", res.Err, StageCopy)
	}
}

// Ctrl-C while the host does not answer the exec of remote-run: Run
// returns, interrupted at the run.
func TestCtrlCWhileExecUnanswered(t *testing.T) {
	leakcheck.Check(t, 5*time.Second)
	s := newServer(t, func(typ, arg string) bool { return typ == "exec" && strings.Contains(arg, "remote-run") })
	res := runCancelled(t, s, 500*time.Millisecond)
	var e *Error
	if !errors.As(res.Err, &e) || e.Stage != StageRun || !errors.Is(res.Err, ErrInterrupted) {
		t.Fatalf("%v, want an interrupted %q failure", res.Err, StageRun)
	}
}

// Ctrl-C while the host never answers a channel open (it answers
// keepalives): Run returns, interrupted at the copy. The NewSession left
// waiting is the one goroutine Run does not join; it ends with the
// connection.
func TestCtrlCWhileOpenUnanswered(t *testing.T) {
	leakcheck.Check(t, 5*time.Second)
	s := newServer(t, func(typ, arg string) bool { return typ == "open" })
	res := runCancelled(t, s, 500*time.Millisecond)
	var e *Error
	if !errors.As(res.Err, &e) || e.Stage != StageCopy || !errors.Is(res.Err, ErrInterrupted) {
		t.Fatalf("%v, want an interrupted %q failure", res.Err, StageCopy)
	}
}

// A host that stops answering anything, keepalives included, while its
// sftp subsystem request is under way: no Ctrl-C, the keepalive cuts the
// connection after 3 intervals (3 s here) and Run fails at the copy with
// that reason.
func TestSilentHostDuringSubsystemCutByKeepalive(t *testing.T) {
	leakcheck.Check(t, 5*time.Second)
	s := newServer(t, func(typ, arg string) bool { return typ == "subsystem" || typ == "global" })
	tg, auth, job := clientFor(t, s)
	done := make(chan Result, 1)
	start := time.Now()
	go func() { done <- Run(context.Background(), tg, auth, job) }()
	var res Result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run has not returned 20 s after the host went silent")
	}
	took := time.Since(start)
	var e *Error
	if !errors.As(res.Err, &e) || e.Stage != StageCopy || !strings.Contains(res.Err.Error(), "no answer to keepalives") {
		t.Fatalf("%v, want a %q failure naming the keepalives", res.Err, StageCopy)
	}
	if took < 3*time.Second || took > 10*time.Second {
		t.Fatalf("took %v, want about 4 s (first keepalive at 1 s, 3 s without answer)", took)
	}
}

// A host that answers keepalives but not a channel open, the sftp request
// or the exec of remote-run, with no Ctrl-C: the reply timeout fails it at
// that stage, naming what went unanswered.
func TestUnansweredRequestTimesOut(t *testing.T) {
	for _, c := range []struct {
		name  string
		mute  func(typ, arg string) bool
		stage Stage
		what  string
	}{
		{"open", func(typ, arg string) bool { return typ == "open" }, StageCopy, "a session"},
		{"subsystem", func(typ, arg string) bool { return typ == "subsystem" }, StageCopy, "the sftp subsystem request"},
		{"exec", func(typ, arg string) bool { return typ == "exec" && strings.Contains(arg, "remote-run") }, StageRun, "the exec of remote-run"},
	} {
		t.Run(c.name, func(t *testing.T) {
			leakcheck.Check(t, 5*time.Second)
			s := newServer(t, c.mute)
			tg, auth, job := clientFor(t, s)
			job.ReplyTimeout = 500 * time.Millisecond
			done := make(chan Result, 1)
			go func() { done <- Run(context.Background(), tg, auth, job) }()
			var res Result
			select {
			case res = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Run has not returned 20 s after a request went unanswered")
			}
			var e *Error
			if !errors.As(res.Err, &e) || e.Stage != c.stage || !errors.Is(res.Err, ErrNoAnswer) || errors.Is(res.Err, ErrInterrupted) {
				t.Fatalf("%v, want a %q failure for no answer", res.Err, c.stage)
			}
			if !strings.Contains(res.Err.Error(), "no answer to "+c.what+" within 500ms") {
				t.Fatalf("%v does not name what went unanswered (%s)", res.Err, c.what)
			}
		})
	}
}
