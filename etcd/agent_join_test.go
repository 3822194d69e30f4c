package etcd

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestAgentsStartedAtOnce starts the three-host demo's agents back to back:
// b and c join a together. Both exchange exports at once through the seed,
// long before etcd lets the second of them in (one new member at a time,
// none within 5 s of the previous change: the exchange used to wait for
// that, 5.4 s), and both become voting members afterwards, each client
// then talking to its own member too.
func TestAgentsStartedAtOnce(t *testing.T) {
	start := func(cfg AgentConfig) *Agent {
		t.Helper()
		ag, err := StartAgent(t.Context(), cfg)
		if err != nil {
			t.Errorf("agent %s: %v", cfg.Host, err)
			return nil
		}
		t.Cleanup(ag.Stop)
		return ag
	}
	a := start(AgentConfig{Host: "a", Server: testServerConfig(t, "a")})
	if a == nil {
		t.FailNow()
	}
	seeds := a.Client().Endpoints()
	began := time.Now()
	agents := map[string]*Agent{"a": a}
	own := map[string]string{} // each joining host's client URL
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range []string{"b", "c"} {
		cfg := AgentConfig{Host: h, Seeds: seeds, Server: testServerConfig(t, h)}
		own[h] = cfg.Server.ClientURLs[0]
		wg.Go(func() {
			ag := start(cfg)
			mu.Lock()
			agents[h] = ag
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	exchange(t, map[string]*Client{"a": a.Client(), "b": agents["b"].Client(), "c": agents["c"].Client()})
	took := time.Since(began)
	t.Logf("b and c started together; all three hosts hold all exports %v later", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the exchange took %v, want well under etcd's 5 s between two new members", took)
	}

	wantMembersWithin(t, a.Client(), 40*time.Second, "a", "b", "c")
	t.Logf("all three are voting members %v after b and c started", time.Since(began).Round(time.Millisecond))
	for _, h := range []string{"b", "c"} {
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(agents[h].Client().Endpoints(), own[h]) {
			if time.Now().After(deadline) {
				t.Fatalf("%s's client uses %v, not its own member %s", h, agents[h].Client().Endpoints(), own[h])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestAgentJoinRetried starts an agent whose server cannot start at first
// (its peer port is taken): it exchanges exports all the same, logs the
// failed join and, once the port is free, becomes a member.
func TestAgentJoinRetried(t *testing.T) {
	a, err := StartAgent(t.Context(), AgentConfig{Host: "a", Server: testServerConfig(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	seeds := a.Client().Endpoints()

	cfgB := testServerConfig(t, "b")
	busy, err := net.Listen("tcp", strings.TrimPrefix(cfgB.PeerURLs[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	failed := make(chan struct{})
	var once sync.Once
	logger := slog.New(noteHandler{func(msg string) {
		if msg == "joining the etcd cluster failed; trying again" {
			once.Do(func() { close(failed) })
		}
	}})
	b, err := StartAgent(t.Context(), AgentConfig{Host: "b", Seeds: seeds, Server: cfgB, Client: ClientConfig{Logger: logger}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	c, err := StartAgent(t.Context(), AgentConfig{Host: "c", Seeds: seeds, NoServer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	select {
	case <-failed:
	case <-time.After(20 * time.Second):
		t.Fatal("b's join on a busy port did not fail")
	}
	exchange(t, map[string]*Client{"a": a.Client(), "b": b.Client(), "c": c.Client()})
	wantMembers(t, a.Client(), "a") // the failed join was rolled back

	busy.Close()
	wantMembersWithin(t, a.Client(), 30*time.Second, "a", "b")
}

// noteHandler is a slog handler that hands each record's message to note.
type noteHandler struct{ note func(msg string) }

func (h noteHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h noteHandler) Handle(_ context.Context, r slog.Record) error {
	h.note(r.Message)
	return nil
}
func (h noteHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h noteHandler) WithGroup(string) slog.Handler      { return h }

// TestAgentStopWhileJoining stops a cluster of three agents all at once,
// as a shutdown of every host does, while the third one's server is a
// learner still joining: it cannot remove its half-added member from a
// cluster that is going away, and must not spend long trying (up to 15 s,
// which the agent's stop waited for).
func TestAgentStopWhileJoining(t *testing.T) {
	start := func(cfg AgentConfig) *Agent {
		t.Helper()
		// etcd's own raft timing: a longer learner phase to catch.
		cfg.Server.HeartbeatInterval, cfg.Server.ElectionTimeout = 0, 0
		ag, err := StartAgent(t.Context(), cfg)
		if err != nil {
			t.Fatalf("agent %s: %v", cfg.Host, err)
		}
		t.Cleanup(ag.Stop)
		return ag
	}
	a := start(AgentConfig{Host: "a", Server: testServerConfig(t, "a")})
	seeds := a.Client().Endpoints()
	b := start(AgentConfig{Host: "b", Seeds: seeds, Server: testServerConfig(t, "b")})
	obs := connectTest(t, seeds)
	wantMembers(t, obs, "a", "b")
	c := start(AgentConfig{Host: "c", Seeds: seeds, Server: testServerConfig(t, "c")})
	deadline := time.Now().Add(30 * time.Second)
	for {
		members, err := obs.memberList(t.Context())
		if err == nil && slices.ContainsFunc(members, func(m *etcdserverpb.Member) bool { return m.IsLearner }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c never seen as a learner: members %v, err %v", members, err)
		}
		time.Sleep(time.Millisecond)
	}
	// The members' own stops are not measured: a leader stopping tries to
	// hand its leadership over first, to members that are stopping too.
	var wg sync.WaitGroup
	wg.Go(a.Stop)
	wg.Go(b.Stop)
	began := time.Now()
	c.Stop()
	took := time.Since(began)
	wg.Wait()
	t.Logf("c, joining, stopped in %v", took.Round(time.Millisecond))
	// The removal's one attempt is 2 s. A server caught starting may add
	// up to 7 s more: etcd's own start asks the other members for the
	// cluster's state (with a 7 s timeout that no context ends), and the
	// stopping leader no longer answers.
	if took > 11*time.Second {
		t.Errorf("c took %v to stop", took)
	}
}
