package etcd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memberEnv, when set, makes the test binary run one etcd member described
// by the JSON ServerConfig in it, so that a test can SIGKILL a member for
// real instead of stopping it politely.
const memberEnv = "MGMT_ETCD_TEST_MEMBER"

func runMemberProcess() {
	var mc memberConfig
	if err := json.Unmarshal([]byte(os.Getenv(memberEnv)), &mc); err != nil {
		fmt.Fprintln(os.Stderr, "member config:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var s *Server
	var err error
	if mc.IdealSize > 0 {
		// An agent in dynamic membership: a client of the seeds that
		// becomes a member when the leader says so.
		c, err := Connect(ctx, ClientConfig{Endpoints: mc.Seeds})
		if err != nil {
			fmt.Fprintln(os.Stderr, "member:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		c.RunMembership(ctx, MembershipConfig{Host: mc.Server.Name, IdealSize: mc.IdealSize, Server: mc.Server, TTL: mc.TTL}, nil)
		c.Close()
		os.Exit(0)
	}
	if len(mc.Seeds) == 0 {
		s, err = StartServer(ctx, mc.Server)
	} else {
		var c *Client
		c, err = Connect(ctx, ClientConfig{Endpoints: mc.Seeds})
		if err == nil {
			s, err = Join(ctx, c, mc.Server)
			c.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "member:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	s.Stop()
	os.Exit(0)
}

// memberConfig is what a member process runs: cfg's server, started
// alone or, with seeds, joined to their cluster.
type memberConfig struct {
	Server ServerConfig
	Seeds  []string
	// With IdealSize, the process is an agent in dynamic membership.
	IdealSize int
	TTL       time.Duration
}

// memberProcess is an etcd member running in a child process.
type memberProcess struct {
	cmd *exec.Cmd
}

// startMemberProcess runs cfg in a child process and waits until it is
// ready; the child is killed at the end of the test if still running.
func startMemberProcess(t testing.TB, cfg ServerConfig, seeds ...string) *memberProcess {
	t.Helper()
	return startProcess(t, memberConfig{Server: cfg, Seeds: seeds})
}

func startProcess(t testing.TB, mc memberConfig) *memberProcess {
	t.Helper()
	cfg := mc.Server
	js, err := json.Marshal(mc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memberEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &memberProcess{cmd: cmd}
	t.Cleanup(m.kill)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "ready" {
				ready <- true
				break
			}
		}
		ready <- false
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("member %s exited before it was ready", cfg.Name)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("member %s not ready within 30s", cfg.Name)
	}
	return m
}

// kill sends SIGKILL to the member's process (ours, by PID) and reaps it.
func (m *memberProcess) kill() {
	if m.cmd.ProcessState != nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.cmd.Wait()
}
