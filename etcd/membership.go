package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// MembershipConfig describes one agent taking part in dynamic membership
// (--ideal-cluster-size).
type MembershipConfig struct {
	Host string // the agent's --hostname
	// IdealSize is the number of etcd members wanted (--ideal-cluster-size).
	IdealSize int
	// Server is the embedded server this agent runs once it is made a
	// member; its Name is set to Host.
	Server ServerConfig
	// TTL is how long an agent that stops answering (crashed, cut off) is
	// still counted as alive (default 10 s; whole seconds).
	TTL time.Duration
}

// agentInfo is what an agent registers about itself.
type agentInfo struct {
	PeerURLs []string `json:"peer_urls"`
	Member   bool     `json:"member"` // its server runs: a change the leader must hear of
}

var errSessionLost = errors.New("membership lease lost")

// Keys: <ns>membership/agents/<host> (the agent's registration) and
// <ns>membership/nominated/<host> (the leader's decision that the host be a
// member), both on the agent's lease, so that both vanish when it dies;
// <ns>membership/election/ is the leader election.
func (c *Client) agentKey(host string) string {
	return c.ns + "membership/agents/" + url.PathEscape(host)
}

func (c *Client) nominationKey(host string) string {
	return c.ns + "membership/nominated/" + url.PathEscape(host)
}

// RunMembership takes part in dynamic membership until ctx ends: the agent
// registers itself on a lease, the agents elect a leader, and the leader
// nominates agents to be etcd members, one at a time in name order, until
// IdealSize members run (all agents, when there are fewer), and removes the
// member of an agent whose lease expired, which makes room for the next.
// A nominated agent joins the cluster (see Join) with cfg.Server.
//
// running is the agent's server if it already runs one (the agent that
// started the cluster), or nil. RunMembership owns it and the server it
// starts: both are stopped when it returns. On return the agent's lease is
// revoked, so the leader removes its member at once.
func (c *Client) RunMembership(ctx context.Context, cfg MembershipConfig, running *Server) error {
	if cfg.Host == "" || cfg.IdealSize < 1 {
		if running != nil {
			running.Stop()
		}
		return fmt.Errorf("%w: dynamic membership needs a host name and an ideal cluster size of at least 1", ErrConfig)
	}
	cfg.Server.Name = cfg.Host
	if cfg.TTL < time.Second {
		cfg.TTL = 10 * time.Second
	}
	m := &membership{c: c, cfg: cfg, server: running}
	if mc, err := cfg.Server.memberConfig(); err == nil {
		m.peerURLs = mc.AdvertisePeerURLs
	} else {
		if running != nil {
			running.Stop()
		}
		return err
	}
	defer func() {
		if m.server != nil {
			m.server.Stop()
		}
	}()
	delay := 100 * time.Millisecond
	for {
		err := m.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("membership interrupted, registering again", "host", cfg.Host, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

type membership struct {
	c        *Client
	cfg      MembershipConfig
	peerURLs []string
	server   *Server // only the follow goroutine changes it while a session runs
}

// runSession registers the agent on a new lease and runs the follower and
// the candidate for leader until the lease is lost or ctx ends.
func (m *membership) runSession(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess, err := concurrency.NewSession(m.c.cli, concurrency.WithTTL(int(m.cfg.TTL/time.Second)), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer func() {
		// Revoke: leaving is announced at once, not after the TTL.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), m.c.timeout)
		m.c.cli.Revoke(rctx, sess.Lease())
		rcancel()
		sess.Close()
	}()
	if err := m.register(ctx, sess.Lease()); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() { errc <- m.lead(ctx, sess) })
	wg.Go(func() { errc <- m.follow(ctx, sess.Lease()) })
	select {
	case <-sess.Done():
		err = errSessionLost
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	return err
}

func (m *membership) register(ctx context.Context, lease clientv3.LeaseID) error {
	v, err := json.Marshal(agentInfo{PeerURLs: m.peerURLs, Member: m.server != nil})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, m.c.timeout)
	defer cancel()
	if _, err := m.c.cli.Put(rctx, m.c.agentKey(m.cfg.Host), string(v), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("register agent %q: %w", m.cfg.Host, err)
	}
	return nil
}

// follow joins the cluster when this agent is nominated, and notices when
// its server stops by itself (the cluster removed it).
func (m *membership) follow(ctx context.Context, lease clientv3.LeaseID) error {
	key := m.c.nominationKey(m.cfg.Host)
	for {
		rctx, cancel := context.WithTimeout(ctx, m.c.timeout)
		resp, err := m.c.cli.Get(rctx, key)
		cancel()
		if err != nil {
			return fmt.Errorf("read nomination: %w", err)
		}
		if len(resp.Kvs) > 0 && m.server == nil {
			m.c.log.Info("nominated as etcd member, joining", "host", m.cfg.Host)
			s, err := Join(ctx, m.c, m.cfg.Server)
			if err != nil {
				return err
			}
			m.server = s
			m.c.log.Info("joined etcd cluster", "host", m.cfg.Host, "endpoints", s.Endpoints())
			if err := m.register(ctx, lease); err != nil {
				return err
			}
			// Learn every member, so that losing the seeds loses nothing.
			sctx, cancel := context.WithTimeout(ctx, m.c.timeout)
			m.c.cli.Sync(sctx)
			cancel()
		}
		var stopped <-chan struct{}
		if m.server != nil {
			stopped = m.server.Done()
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := m.c.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1))
		select {
		case <-ctx.Done():
			wcancel()
			return ctx.Err()
		case <-stopped:
			m.c.log.Warn("etcd server stopped: removed from the cluster", "host", m.cfg.Host)
			m.server.Stop()
			m.server = nil
			if err := m.register(ctx, lease); err != nil {
				wcancel()
				return err
			}
		case wr, ok := <-wch:
			if ok && wr.Err() != nil {
				wcancel()
				return fmt.Errorf("watch nomination: %w", wr.Err())
			}
		}
		wcancel()
	}
}

// lead campaigns for leadership and, once elected, keeps the membership
// as wanted, re-examining it whenever an agent or nomination changes.
func (m *membership) lead(ctx context.Context, sess *concurrency.Session) error {
	e := concurrency.NewElection(sess, m.c.ns+"membership/election/")
	if err := e.Campaign(ctx, m.cfg.Host); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("campaign: %w", err)
	}
	m.c.log.Info("elected to manage etcd membership", "host", m.cfg.Host, "ideal_size", m.cfg.IdealSize)
	prefix := m.c.ns + "membership/"
	for {
		rev, err := m.reconcile(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("manage membership: %w", err)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := m.c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		select {
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		case wr, ok := <-wch:
			if ok && wr.Err() != nil {
				cancel()
				return fmt.Errorf("watch agents: %w", wr.Err())
			}
		case <-time.After(m.cfg.TTL):
			// A learner promoted, a join that failed: changes etcd does not
			// announce. Look again now and then.
		}
		cancel()
	}
}

// reconcile removes the members of dead agents and nominates the next
// agent if members are missing; it returns the revision it read.
func (m *membership) reconcile(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, m.c.timeout)
	defer cancel()
	resp, err := m.c.cli.Get(ctx, m.c.ns+"membership/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	agents := map[string]agentInfo{}
	leases := map[string]clientv3.LeaseID{}
	nominated := map[string]bool{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), m.c.ns+"membership/")
		kind, esc, ok := strings.Cut(rest, "/")
		host, err := url.PathUnescape(esc)
		if !ok || err != nil {
			continue
		}
		switch kind {
		case "agents":
			var info agentInfo
			if json.Unmarshal(kv.Value, &info) == nil {
				agents[host] = info
				leases[host] = clientv3.LeaseID(kv.Lease)
			}
		case "nominated":
			nominated[host] = true
		}
	}
	members, err := m.c.memberList(ctx)
	if err != nil {
		return 0, err
	}

	var kept, dead []*etcdserverpb.Member
	for _, mem := range members {
		if m.alive(mem, agents) {
			kept = append(kept, mem)
		} else {
			dead = append(dead, mem)
		}
	}
	if len(kept) == 0 && len(dead) > 0 {
		// Never remove the last member: without one there is no cluster.
		kept, dead = dead[:1], dead[1:]
	}
	for _, mem := range dead {
		m.c.log.Info("removing the etcd member of a departed agent", "member", mem.Name, "id", fmt.Sprintf("%x", mem.ID))
		if _, err := m.c.cli.MemberRemove(ctx, mem.ID); err != nil {
			m.c.log.Warn("remove etcd member", "member", mem.Name, "err", err)
			kept = append(kept, mem)
		}
	}
	if len(kept) >= m.cfg.IdealSize {
		return resp.Header.Revision, nil
	}
	started := map[string]bool{}
	for _, mem := range kept {
		if mem.Name != "" && !mem.IsLearner {
			started[mem.Name] = true
		}
	}
	var candidates []string
	for host := range agents {
		if started[host] {
			continue
		}
		if nominated[host] {
			return resp.Header.Revision, nil // one join at a time
		}
		candidates = append(candidates, host)
	}
	if len(candidates) == 0 {
		return resp.Header.Revision, nil
	}
	slices.Sort(candidates)
	next := candidates[0]
	// On the agent's own lease, and only while it is registered.
	tr, err := m.c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(m.c.agentKey(next)), "=", leases[next])).
		Then(clientv3.OpPut(m.c.nominationKey(next), m.cfg.Host, clientv3.WithLease(leases[next]))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("nominate %q: %w", next, err)
	}
	if tr.Succeeded {
		m.c.log.Info("nominated an agent to be an etcd member", "agent", next, "members", len(kept), "ideal_size", m.cfg.IdealSize)
	}
	return tr.Header.Revision, nil
}

// alive reports whether mem belongs to a registered agent: by name once
// started, by peer URLs before.
func (m *membership) alive(mem *etcdserverpb.Member, agents map[string]agentInfo) bool {
	if mem.Name != "" {
		_, ok := agents[mem.Name]
		return ok
	}
	for _, a := range agents {
		if overlaps(a.PeerURLs, mem.PeerURLs) {
			return true
		}
	}
	return false
}
