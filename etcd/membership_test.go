package etcd

import (
	"context"
	"sync"
	"testing"
	"time"
)

// runAgent runs RunMembership for host in the test's process until the
// end of the test.
func runAgent(t *testing.T, c *Client, cfg MembershipConfig, running *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.RunMembership(ctx, cfg, running); err != nil {
			t.Errorf("agent %s: %v", cfg.Host, err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestDynamicMembership grows a cluster from one member to the ideal three
// as agents arrive, leaves a fourth agent a client, and replaces a member
// whose agent is killed with that fourth agent.
func TestDynamicMembership(t *testing.T) {
	const ideal = 3
	ttl := time.Second
	cfgA := testServerConfig(t, "a")
	a, err := StartServer(t.Context(), cfgA)
	if err != nil {
		t.Fatal(err)
	}
	ca := connectTest(t, a.Endpoints())
	runAgent(t, ca, MembershipConfig{Host: "a", IdealSize: ideal, Server: cfgA, TTL: ttl}, a)
	obs := connectTest(t, a.Endpoints())

	// b, in a process of its own so that it can be killed for real.
	b := startProcess(t, memberConfig{Server: testServerConfig(t, "b"), Seeds: a.Endpoints(), IdealSize: ideal, TTL: ttl})
	start := time.Now()
	wantMembersWithin(t, obs, 30*time.Second, "a", "b")
	t.Logf("1 -> 2 members in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	for _, h := range []string{"c", "d"} {
		cfg := testServerConfig(t, h)
		runAgent(t, connectTest(t, a.Endpoints()), MembershipConfig{Host: h, IdealSize: ideal, Server: cfg, TTL: ttl}, nil)
	}
	wantMembersWithin(t, obs, 30*time.Second, "a", "b", "c")
	t.Logf("2 -> 3 members in %v; d stays a client", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	b.kill()
	wantMembersWithin(t, obs, 30*time.Second, "a", "c", "d")
	t.Logf("b killed, replaced by d in %v", time.Since(start).Round(time.Millisecond))

	// The exchange works across the new membership.
	cd := connectTest(t, []string{"http://" + testEndpoint(t, obs, "d")})
	ch, err := cd.WatchExports(t.Context(), "d", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Publish(t.Context(), "a", demoExports("a", "v1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 10*time.Second, "a's exports at d", hasNames("a/file/file3a", "a/file/file4a"))
}

// testEndpoint returns the client address member name advertises.
func testEndpoint(t *testing.T, c *Client, name string) string {
	t.Helper()
	members, err := c.memberList(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Name == name && len(m.ClientURLs) > 0 {
			return m.ClientURLs[0][len("http://"):]
		}
	}
	t.Fatalf("no member %s", name)
	return ""
}
