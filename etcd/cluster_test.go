package etcd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// clusterConfigs returns the configurations of an n-member cluster formed
// statically, members named m1..mn.
func clusterConfigs(t testing.TB, n int) []ServerConfig {
	t.Helper()
	var cfgs []ServerConfig
	var initial []string
	for i := range n {
		cfg := testServerConfig(t, fmt.Sprintf("m%d", i+1))
		cfgs = append(cfgs, cfg)
		initial = append(initial, cfg.Name+"="+cfg.PeerURLs[0])
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
	}
	return cfgs
}

// startCluster starts the members in cfgs at once (each waits for the
// others' votes) and returns them once all are ready.
func startCluster(t testing.TB, cfgs []ServerConfig) []*Server {
	t.Helper()
	servers := make([]*Server, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() { servers[i], errs[i] = StartServer(context.Background(), cfg) })
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			t.Cleanup(s.Stop)
		}
		if errs[i] != nil {
			t.Fatalf("member %s: %v", cfgs[i].Name, errs[i])
		}
	}
	return servers
}

// rotate returns eps starting at index i, so that each client prefers a
// different member but can fail over to the others.
func rotate(eps []string, i int) []string {
	return append(append([]string(nil), eps[i:]...), eps[:i]...)
}

func TestPublishWatchThreeMembers(t *testing.T) {
	servers := startCluster(t, clusterConfigs(t, 3))
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.Endpoints()...)
	}
	clients := map[string]*Client{}
	for i, h := range []string{"a", "b", "c"} {
		// Each host talks to its own member only, as agents with an
		// embedded server do.
		clients[h] = connectTest(t, eps[i:i+1])
	}
	exchange(t, clients)
}

// TestMemberKilled kills the leader of a three-member cluster with SIGKILL
// and checks that the exchange between the hosts goes on.
func TestMemberKilled(t *testing.T) {
	cfgs := clusterConfigs(t, 3)
	var wg sync.WaitGroup
	var child *memberProcess
	wg.Go(func() { child = startMemberProcess(t, cfgs[2]) })
	startCluster(t, cfgs[:2])
	wg.Wait()
	if child == nil {
		t.FailNow()
	}
	var eps []string
	for _, cfg := range cfgs {
		eps = append(eps, cfg.ClientURLs[0])
	}
	clients := map[string]*Client{}
	for i, h := range []string{"a", "b", "c"} {
		clients[h] = connectTest(t, rotate(eps, i))
	}
	exchange(t, clients) // c's client prefers the member about to die

	ctx := t.Context()
	// Make the child the leader, so that its death forces an election.
	victim := memberID(t, clients["a"], eps[2])
	leader := leaderEndpoint(t, clients["a"], eps)
	if leader != eps[2] {
		lc := connectTest(t, []string{leader})
		if _, err := lc.cli.MoveLeader(ctx, victim); err != nil {
			t.Fatalf("move leader to m3: %v", err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); leaderEndpoint(t, clients["a"], eps) != eps[2]; {
		if time.Now().After(deadline) {
			t.Fatalf("leadership did not move to %s", eps[2])
		}
		time.Sleep(20 * time.Millisecond)
	}

	watches := map[string]<-chan []Export{}
	for _, h := range []string{"b", "c"} {
		ch, err := clients[h].WatchExports(ctx, h, []string{"file"})
		if err != nil {
			t.Fatal(err)
		}
		watches[h] = ch
	}
	killed := time.Now()
	child.kill()
	if err := clients["a"].Publish(ctx, "a", demoExports("a", "after-kill")); err != nil {
		t.Fatalf("publish after the leader died: %v", err)
	}
	for h, ch := range watches {
		waitFor(t, ch, 20*time.Second, "a's exports after the kill", func(s []Export) bool {
			for _, e := range s {
				if e.Host == "a" && strings.Contains(string(e.Params), "after-kill") {
					return true
				}
			}
			return false
		})
		t.Logf("%s got a's new exports %v after the leader was killed", h, time.Since(killed).Round(time.Millisecond))
	}
	// c, whose preferred member is gone, can still publish.
	if err := clients["c"].Publish(ctx, "c", demoExports("c", "after-kill")); err != nil {
		t.Fatalf("c publish after its member died: %v", err)
	}
}

// memberID asks the member at ep for its ID.
func memberID(t testing.TB, c *Client, ep string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := c.cli.Status(ctx, ep)
	if err != nil {
		t.Fatalf("status of %s: %v", ep, err)
	}
	return st.Header.MemberId
}

// leaderEndpoint returns the endpoint in eps of the current leader.
func leaderEndpoint(t testing.TB, c *Client, eps []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for _, ep := range eps {
		st, err := c.cli.Status(ctx, ep)
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return ep
		}
	}
	t.Fatal("no leader among", eps)
	return ""
}
