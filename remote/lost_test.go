package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// dyingServer is an in-process SSH server with SFTP whose host dies (its
// TCP connection is closed under the session) as soon as `mgmt
// remote-run` is started: the moment a host is killed during its run.
type dyingServer struct {
	t    *testing.T
	l    net.Listener
	cfg  *ssh.ServerConfig
	wg   sync.WaitGroup
	home string
	// mute, if set, says which channel requests (type, and the command
	// or subsystem) get no answer: the server reads on, answers
	// keepalives and closes, but never that request.
	mute func(typ, arg string) bool
}

func newDyingServer(t *testing.T) *dyingServer { return newServer(t, nil) }

func newServer(t *testing.T, mute func(typ, arg string) bool) *dyingServer {
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dyingServer{t: t, l: l, cfg: cfg, home: t.TempDir(), mute: mute}
	s.wg.Go(s.serve)
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

func (s *dyingServer) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.conn(c) })
	}
}

func (s *dyingServer) conn(c net.Conn) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.wg.Go(func() {
		for r := range reqs {
			if s.mute != nil && s.mute("global", r.Type) {
				continue // no answer, ever
			}
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if s.mute != nil && s.mute("open", nc.ChannelType()) {
			continue // neither accepted nor refused
		}
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer ch.Close()
			for r := range creqs {
				var p struct{ S string }
				ssh.Unmarshal(r.Payload, &p)
				switch {
				case s.mute != nil && s.mute(r.Type, p.S):
					// no answer, ever
				case r.Type == "subsystem" && p.S == "sftp":
					r.Reply(true, nil)
					srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.home))
					if err == nil {
						srv.Serve()
					}
					return
				case r.Type == "exec" && strings.Contains(p.S, "remote-run"):
					r.Reply(true, nil)
					c.Close() // the host is gone
					return
				case r.Type == "exec":
					r.Reply(true, nil)
					ch.SendRequest("exit-status", false, ssh.Marshal(struct{ N uint32 }{1}))
					return
				default:
					r.Reply(false, nil)
				}
			}
		})
	}
}

// TestRunHostDiesDuringRun: a host whose connection drops while its run is
// under way fails as "run failed", and Run returns: the cleanup that
// follows never waits on the dead connection. It once could, for good:
// x/crypto/ssh drops the channels of a connection that has ended before it
// refuses new ones, and a session opened in between is never answered.
func TestRunHostDiesDuringRun(t *testing.T) {
	tg, auth, job := clientFor(t, newDyingServer(t))
	n := 1000
	if testing.Short() {
		n = 30
	}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		done := make(chan Result, 1)
		go func() { done <- Run(ctx, tg, auth, job) }()
		var res Result
		select {
		case res = <-done:
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			cancel()
			t.Fatalf("run %d: Run has not returned 20 s after the host died:\n%s", i, buf)
		}
		cancel()
		var e *Error
		if !errors.As(res.Err, &e) || e.Stage != StageRun {
			t.Fatalf("run %d: %v, want a %q failure", i, res.Err, StageRun)
		}
		if res.Left == "" {
			t.Fatalf("run %d: the private directory is reported removed over a dead connection", i)
		}
	}
}
