package etcd

import (
	"errors"
	"testing"
)

// TestAgentModes starts agents the ways `mgmt run` does: a first host
// alone, a second joining it, a third as a client only, and runs the
// exchange between them.
func TestAgentModes(t *testing.T) {
	start := func(cfg AgentConfig) *Agent {
		t.Helper()
		a, err := StartAgent(t.Context(), cfg)
		if err != nil {
			t.Fatalf("agent %s: %v", cfg.Host, err)
		}
		t.Cleanup(a.Stop)
		return a
	}
	a := start(AgentConfig{Host: "a", Server: testServerConfig(t, "")})
	seeds := a.Client().Endpoints()
	b := start(AgentConfig{Host: "b", Seeds: seeds, Server: testServerConfig(t, "")})
	c := start(AgentConfig{Host: "c", Seeds: seeds, NoServer: true})
	wantMembers(t, a.Client(), "a", "b")
	exchange(t, map[string]*Client{"a": a.Client(), "b": b.Client(), "c": c.Client()})

	if _, err := StartAgent(t.Context(), AgentConfig{Host: "d", NoServer: true}); !errors.Is(err, ErrConfig) {
		t.Fatalf("--no-server without seeds: err = %v, want ErrConfig", err)
	}
}
