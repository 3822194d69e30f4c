package etcd

import (
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestJoin grows a cluster from one host to three by joining, kills the
// third host's member with SIGKILL, checks the other two keep exchanging,
// and starts it again: first with its data (it simply comes back), then
// without (it is replaced by a new member of the same name).
func TestJoin(t *testing.T) {
	cfgA := testServerConfig(t, "a")
	a := startTestServer(t, cfgA)
	ca := connectTest(t, a.Endpoints())

	cfgB := testServerConfig(t, "b")
	b, err := Join(t.Context(), ca, cfgB)
	if err != nil {
		t.Fatalf("b joins a: %v", err)
	}
	t.Cleanup(b.Stop)
	cb := connectTest(t, b.Endpoints())

	cfgC := testServerConfig(t, "c")
	seeds := append(a.Endpoints(), b.Endpoints()...)
	child := startMemberProcess(t, cfgC, seeds...)
	cc := connectTest(t, []string{cfgC.ClientURLs[0]})

	members := wantMembers(t, ca, "a", "b", "c")
	idC := members["c"].ID
	exchange(t, map[string]*Client{"a": ca, "b": cb, "c": cc})

	// c dies; a and b still have quorum and go on.
	child.kill()
	ch, err := cb.WatchExports(t.Context(), "b", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Publish(t.Context(), "a", demoExports("a", "c-dead")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 10*time.Second, "a's exports while c is dead", func(s []Export) bool {
		return len(s) > 0 && strings.Contains(string(s[0].Params), "c-dead")
	})

	// c comes back with its data: the same member.
	child = startMemberProcess(t, cfgC, seeds...)
	if got := wantMembers(t, ca, "a", "b", "c")["c"].ID; got != idC {
		t.Fatalf("c restarted with its data as member %x, want %x", got, idC)
	}
	chC, err := connectTest(t, []string{cfgC.ClientURLs[0]}).WatchExports(t.Context(), "c", []string{"file"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, chC, 10*time.Second, "a's latest exports at c", func(s []Export) bool {
		return len(s) > 0 && strings.Contains(string(s[0].Params), "c-dead")
	})

	// c comes back without its data: a new member replaces the old one.
	child.kill()
	if err := os.RemoveAll(cfgC.DataDir); err != nil {
		t.Fatal(err)
	}
	startMemberProcess(t, cfgC, seeds...)
	if got := wantMembers(t, ca, "a", "b", "c")["c"].ID; got == idC {
		t.Fatal("c restarted without data kept its old member")
	}
}

func TestJoinConflict(t *testing.T) {
	cfgA := testServerConfig(t, "a")
	a := startTestServer(t, cfgA)
	ca := connectTest(t, a.Endpoints())
	cfgB := testServerConfig(t, "b")
	cfgB.PeerURLs = cfgA.PeerURLs // b claims a's peer address
	if _, err := Join(t.Context(), ca, cfgB); !errors.Is(err, ErrMemberConflict) {
		t.Fatalf("err = %v, want ErrMemberConflict", err)
	}
	wantMembers(t, ca, "a")
}

// TestJoinRollback joins a server that cannot start (its client port is
// taken) and checks that the member it added is removed again.
func TestJoinRollback(t *testing.T) {
	a := startTestServer(t, testServerConfig(t, "a"))
	ca := connectTest(t, a.Endpoints())
	cfgB := testServerConfig(t, "b")
	cfgB.ClientURLs = a.Endpoints()
	if _, err := Join(t.Context(), ca, cfgB); err == nil {
		t.Fatal("joined on a busy port")
	}
	wantMembers(t, ca, "a")
}

// TestJoinAtOnce joins three servers to a cluster at the same time. raft
// drops a change of membership proposed while another is being applied,
// and etcd then waits for it until the request's context ends: a join
// whose add (or promotion) raced another's used to wait out its whole start
// timeout and fail. With etcd's own raft timing (the tests' shorter one
// applies changes too fast for the race to show often) that happened in
// every run. etcd takes one learner at a time and 5 s between changes, so
// the last of the three is in after about 10 s.
func TestJoinAtOnce(t *testing.T) {
	etcdTiming := func(cfg ServerConfig) ServerConfig {
		cfg.HeartbeatInterval, cfg.ElectionTimeout = 0, 0
		cfg.StartTimeout = 40 * time.Second
		return cfg
	}
	a := startTestServer(t, etcdTiming(testServerConfig(t, "a")))
	ca := connectTest(t, a.Endpoints())
	began := time.Now()
	var wg sync.WaitGroup
	for _, name := range []string{"b", "c", "d"} {
		cfg := etcdTiming(testServerConfig(t, name))
		wg.Go(func() {
			seeds, err := Connect(t.Context(), ClientConfig{Endpoints: a.Endpoints()})
			if err != nil {
				t.Error(err)
				return
			}
			defer seeds.Close()
			// A join can also fail for a moment, and is rolled back: its
			// server asked a member that had not yet applied the add
			// ("member count is unequal"). The agent tries again; so
			// does this test, but it must not take the 40 s a hung add
			// or promotion took.
			s, err := Join(t.Context(), seeds, cfg)
			if err != nil {
				t.Logf("%s joins a: %v; again", name, err)
				s, err = Join(t.Context(), seeds, cfg)
			}
			if err != nil {
				t.Errorf("%s joins a: %v", name, err)
				return
			}
			took := time.Since(began)
			t.Logf("%s joined in %v", name, took.Round(time.Millisecond))
			if took > 30*time.Second {
				t.Errorf("%s joined only after %v", name, took)
			}
			t.Cleanup(s.Stop)
		})
	}
	wg.Wait()
	wantMembers(t, ca, "a", "b", "c", "d")
}

// wantMembers waits until the cluster's members are exactly names, all
// started voting members, and returns them by name.
func wantMembers(t testing.TB, c *Client, names ...string) map[string]*etcdserverpb.Member {
	t.Helper()
	return wantMembersWithin(t, c, 15*time.Second, names...)
}

func wantMembersWithin(t testing.TB, c *Client, d time.Duration, names ...string) map[string]*etcdserverpb.Member {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		members, err := c.memberList(t.Context())
		byName := map[string]*etcdserverpb.Member{}
		var got []string
		for _, m := range members {
			n := m.Name
			if n == "" {
				n = "(unstarted)"
			}
			if m.IsLearner {
				n += "(learner)"
			}
			got = append(got, n)
			byName[m.Name] = m
		}
		slices.Sort(got)
		if err == nil && slices.Equal(got, names) {
			return byName
		}
		if time.Now().After(deadline) {
			t.Fatalf("members %v (err %v), want %v", got, err, names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A host killed between its add as a learner and its promotion leaves a
// learner that never answers; etcd takes one learner at a time, so it used
// to refuse every later join. A join removes such a learner once none of
// its peer URLs has answered for staleLearnerAfter.
func TestJoinRemovesStaleLearner(t *testing.T) {
	old := staleLearnerAfter
	staleLearnerAfter = 500 * time.Millisecond
	t.Cleanup(func() { staleLearnerAfter = old })
	a := startTestServer(t, testServerConfig(t, "a"))
	ca := connectTest(t, a.Endpoints())
	dead := "http://" + freeAddrs(t, 1)[0] // nothing listens there
	if _, err := ca.cli.MemberAddAsLearner(t.Context(), []string{dead}); err != nil {
		t.Fatal(err)
	}
	cfgB := testServerConfig(t, "b")
	b, err := Join(t.Context(), ca, cfgB)
	if err != nil {
		t.Fatalf("b could not join past the stale learner: %v", err)
	}
	t.Cleanup(b.Stop)
	for _, m := range wantMembers(t, ca, "a", "b") {
		if slices.Contains(m.PeerURLs, dead) {
			t.Fatalf("the stale learner is still a member: %v", m)
		}
	}
}
