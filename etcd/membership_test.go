package etcd

import (
	"testing"
	"time"
)

// TestDynamicMembership grows a cluster from one member to the ideal three
// as agents arrive, leaves a fourth agent a client, and replaces a member
// whose agent is killed with that fourth agent.
func TestDynamicMembership(t *testing.T) {
	const ideal = 3
	ttl := time.Second
	start := func(host string, seeds []string) *Agent {
		t.Helper()
		ag, err := StartAgent(t.Context(), AgentConfig{
			Host: host, Seeds: seeds, IdealClusterSize: ideal, MembershipTTL: ttl,
			Server: testServerConfig(t, host),
		})
		if err != nil {
			t.Fatalf("agent %s: %v", host, err)
		}
		t.Cleanup(ag.Stop)
		return ag
	}
	ca := start("a", nil).Client()
	seeds := ca.Endpoints()
	obs := connectTest(t, seeds)

	// b, in a process of its own so that it can be killed for real.
	b := startProcess(t, memberConfig{Server: testServerConfig(t, "b"), Seeds: seeds, IdealSize: ideal, TTL: ttl})
	began := time.Now()
	wantMembersWithin(t, obs, 30*time.Second, "a", "b")
	t.Logf("1 -> 2 members in %v", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	start("c", seeds)
	wantMembersWithin(t, obs, 30*time.Second, "a", "b", "c")
	t.Logf("2 -> 3 members in %v", time.Since(began).Round(time.Millisecond))
	// d comes once the cluster has its ideal size (started together, c
	// or d could be nominated first: CI once saw d): it stays a client.
	start("d", seeds)
	time.Sleep(2 * time.Second)
	wantMembersWithin(t, obs, time.Second, "a", "b", "c")

	began = time.Now()
	b.kill()
	wantMembersWithin(t, obs, 30*time.Second, "a", "c", "d")
	t.Logf("b killed, replaced by d in %v", time.Since(began).Round(time.Millisecond))

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
