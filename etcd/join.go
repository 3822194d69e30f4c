package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// ErrMemberConflict reports that the cluster has a member using this
// server's peer URLs under another name.
var ErrMemberConflict = errors.New("etcd member conflict")

// Join starts cfg's server as a member of the cluster reached through
// seeds. A server whose data directory already holds the data of a current
// member simply starts again (an agent restarted). Otherwise the server is
// added as a learner (a learner does not count towards quorum, so a new
// member that fails to start cannot block the cluster), started with
// initial-cluster-state=existing, and promoted to a voting member once it
// has caught up. On failure the half-added member is removed again.
//
// A member of the same name that is not this server's data directory's
// (the host came back without its data, or with new addresses) is removed
// first: the name is the host's identity. Data of a member the cluster
// removed is moved aside to DataDir+".removed".
func Join(ctx context.Context, seeds *Client, cfg ServerConfig) (*Server, error) {
	mc, err := cfg.memberConfig()
	if err != nil {
		return nil, err
	}
	peerURLs := mc.AdvertisePeerURLs
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	members, err := seeds.memberList(ctx)
	if err != nil && hasData(cfg.DataDir) {
		// No answer, perhaps because this member's own absence cost the
		// cluster its quorum (two members, one of them us): a member that
		// has its data starts as itself; its data knows the cluster.
		seeds.log.Warn("cluster did not answer: starting the member from its data", "member", cfg.Name, "err", err)
		cfg.Existing = true
		s, serr := StartServer(ctx, cfg)
		if serr == nil {
			return s, nil
		}
		err = errors.Join(err, serr)
	}
	if err != nil {
		return nil, fmt.Errorf("join as %q: %w", cfg.Name, err)
	}
	var self *etcdserverpb.Member // a started member of this name
	for _, m := range members {
		switch {
		case m.Name == cfg.Name:
			self = m
		case m.Name != "" && overlaps(m.PeerURLs, peerURLs):
			return nil, fmt.Errorf("join as %q: %w: member %q already uses peer URLs %v", cfg.Name, ErrMemberConflict, m.Name, m.PeerURLs)
		}
	}
	if hasData(cfg.DataDir) {
		if self != nil && slices.Equal(sorted(self.PeerURLs), sorted(peerURLs)) {
			cfg.Existing = true
			cfg.InitialCluster = initialCluster(members, self.ID, cfg.Name)
			s, err := StartServer(ctx, cfg)
			if err == nil && self.IsLearner {
				// It died between its start and its promotion.
				if err = seeds.promote(ctx, self.ID); err == nil {
					err = s.waitVoter(ctx)
				}
				if err != nil {
					s.Stop()
					s = nil
				}
			}
			if err != nil {
				return nil, fmt.Errorf("join as %q: %w", cfg.Name, err)
			}
			return s, nil
		}
		old := cfg.DataDir + ".removed"
		if err := os.RemoveAll(old); err != nil {
			return nil, fmt.Errorf("join as %q: %w", cfg.Name, err)
		}
		if err := os.Rename(cfg.DataDir, old); err != nil {
			return nil, fmt.Errorf("join as %q: move aside the data of a removed member: %w", cfg.Name, err)
		}
		seeds.log.Info("moved aside the data of a removed etcd member", "member", cfg.Name, "to", old)
	}
	if self != nil {
		// Our name, but not our data: an earlier life of this host.
		if err := seeds.remove(ctx, self.ID); err != nil {
			return nil, fmt.Errorf("join as %q: the stale member of that name: %w", cfg.Name, err)
		}
	}

	// A member with our peer URLs but no name yet is an earlier attempt
	// that never started: reuse it.
	var id uint64
	var learner bool
	for _, m := range members {
		if m.Name == "" && overlaps(m.PeerURLs, peerURLs) {
			id, learner = m.ID, m.IsLearner
		}
	}
	if id == 0 {
		if id, learner, members, err = seeds.addLearner(ctx, peerURLs); err != nil {
			return nil, fmt.Errorf("join as %q: add member: %w", cfg.Name, err)
		}
	}
	cfg.Existing = true
	cfg.InitialCluster = initialCluster(members, id, cfg.Name)
	s, err := StartServer(ctx, cfg)
	if err == nil && learner {
		if err = seeds.promote(ctx, id); err == nil {
			err = s.waitVoter(ctx)
		}
		if err != nil {
			s.Stop()
		}
	}
	if err != nil {
		// A learner left behind would refuse every other host's join. When
		// the join was called off (the agent stops, perhaps with the whole
		// cluster), one attempt is all it waits for.
		rollback := seeds.timeout
		if ctx.Err() != nil {
			rollback = confChangeTimeout
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), rollback)
		if rerr := seeds.remove(rctx, id); rerr != nil {
			err = errors.Join(err, fmt.Errorf("roll back the member added: %w", rerr))
		}
		rcancel()
		return nil, fmt.Errorf("join as %q: %w", cfg.Name, err)
	}
	return s, nil
}

// confChangeTimeout bounds one request that changes the membership. raft
// takes one change of membership at a time and drops a change proposed
// while another is still being applied; etcd then waits for the dropped one
// until the request's context ends. Two hosts joining at once (one's add or
// promotion racing the other's) used to wait out the whole start timeout
// that way, and the stuck learner then refused every other join ("too many
// learners"). A change normally applies within a raft round trip; one that
// takes longer is tried again, and a change that did apply is recognised.
const confChangeTimeout = 2 * time.Second

// addLearner adds a learner with peerURLs and returns its ID, whether it
// is still a learner, and the members it must start with. etcd refuses a
// change of membership until the leader has been connected to a quorum
// for 5 s (ErrUnhealthy: right after another member joined or one died)
// and allows one learner at a time: both are waited out, until ctx ends.
// While another host's learner is joining, no add is proposed at all (it
// would only be refused, and could push the other's promotion out of
// raft). A member's ID is derived from its peer URLs and the current
// second, so re-adding the peer URLs of a member removed within the same
// second is refused as "member not found" (the ID was removed): the next
// second gives a new ID.
func (c *Client) addLearner(ctx context.Context, peerURLs []string) (uint64, bool, []*etcdserverpb.Member, error) {
	var (
		id      uint64
		learner bool
		members []*etcdserverpb.Member
	)
	unreachable := map[uint64]time.Time{} // learners in the way: since when no peer URL answers
	err := retry(ctx, func() error {
		var err error
		if members, err = c.memberList(ctx); err != nil {
			return err
		}
		for _, m := range members {
			switch {
			case m.Name == "" && overlaps(m.PeerURLs, peerURLs):
				// An add of ours that applied, its answer lost.
				id, learner = m.ID, m.IsLearner
				return nil
			case m.IsLearner:
				if c.staleLearner(ctx, m, unreachable) {
					c.log.Warn("removing a learner whose host is gone: it would refuse every join", "member", m.Name, "peer_urls", m.PeerURLs, "unreachable_for", staleLearnerAfter.String())
					if err := c.remove(ctx, m.ID); err != nil {
						return fmt.Errorf("remove the stale learner %v: %w", m.PeerURLs, err)
					}
					return fmt.Errorf("removed the stale learner %v: %w", m.PeerURLs, rpctypes.ErrTooManyLearners) // list again
				}
				return fmt.Errorf("member %q %v is still a learner: %w", m.Name, m.PeerURLs, rpctypes.ErrTooManyLearners)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, confChangeTimeout)
		defer cancel()
		resp, err := c.cli.MemberAddAsLearner(rctx, peerURLs)
		if err != nil {
			return err
		}
		id, learner, members = resp.Member.ID, true, resp.Members
		return nil
	}, rpctypes.ErrUnhealthy, rpctypes.ErrTooManyLearners, rpctypes.ErrMemberNotFound, rpctypes.ErrPeerURLExist)
	return id, learner, members, err
}

// staleLearnerAfter is how long a learner in the way of a join may leave
// every peer URL of its unanswered before it is taken for the leftover of
// a host that died while joining (killed between its add and its
// promotion, it never rolled back). A live joiner starts its server right
// after its add, so its peer port answers within moments; one that
// answers but never catches up is rolled back by its own joiner within
// its start timeout.
var staleLearnerAfter = 10 * time.Second

// staleLearner tells whether learner m has left its peer URLs unanswered
// (no TCP connection) for staleLearnerAfter, as seen by the probes of this
// join (since: when each learner was first seen unanswered).
func (c *Client) staleLearner(ctx context.Context, m *etcdserverpb.Member, since map[uint64]time.Time) bool {
	for _, raw := range m.PeerURLs {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", u.Host)
		cancel()
		if err == nil {
			conn.Close()
			delete(since, m.ID)
			return false
		}
	}
	first, ok := since[m.ID]
	if !ok {
		since[m.ID] = time.Now()
		return false
	}
	return time.Since(first) >= staleLearnerAfter
}

// promote makes learner id a voting member as soon as it has caught up
// with the leader. A promotion that applied though its answer was lost is
// seen on the next attempt: the member is no learner any more.
func (c *Client) promote(ctx context.Context, id uint64) error {
	err := retry(ctx, func() error {
		rctx, cancel := context.WithTimeout(ctx, confChangeTimeout)
		defer cancel()
		_, err := c.cli.MemberPromote(rctx, id)
		if errors.Is(err, rpctypes.ErrMemberNotLearner) {
			return nil
		}
		return err
	}, rpctypes.ErrMemberLearnerNotReady, rpctypes.ErrUnhealthy, rpctypes.ErrMemberNotEnoughStarted)
	if err != nil {
		return fmt.Errorf("promote learner %x: %w", id, err)
	}
	return nil
}

// remove removes member id; one already gone is no error.
func (c *Client) remove(ctx context.Context, id uint64) error {
	err := retry(ctx, func() error {
		rctx, cancel := context.WithTimeout(ctx, confChangeTimeout)
		defer cancel()
		_, err := c.cli.MemberRemove(rctx, id)
		if errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil
		}
		return err
	}, rpctypes.ErrUnhealthy)
	if err != nil {
		return fmt.Errorf("remove member %x: %w", id, err)
	}
	return nil
}

// retry calls f until it succeeds, fails with an error that is neither in
// transient nor a timeout of one request (see confChangeTimeout), or ctx
// ends (then the last error is returned).
func retry(ctx context.Context, f func() error, transient ...error) error {
	transient = append(transient, context.DeadlineExceeded, rpctypes.ErrTimeout,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader)
	delay := 20 * time.Millisecond
	for {
		err := f()
		if err == nil || ctx.Err() != nil || !slices.ContainsFunc(transient, func(t error) bool { return errors.Is(err, t) }) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

func (c *Client) memberList(ctx context.Context) ([]*etcdserverpb.Member, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.cli.MemberList(rctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return resp.Members, nil
}

// initialCluster spells members as etcd's --initial-cluster, naming the
// member id (not started yet, so nameless) name.
func initialCluster(members []*etcdserverpb.Member, id uint64, name string) string {
	var parts []string
	for _, m := range members {
		n := m.Name
		if m.ID == id {
			n = name
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// hasData reports whether dir holds an etcd member's data.
func hasData(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// waitVoter waits until the server has applied its own promotion: until
// then it refuses clients ("rpc not supported for learner"). etcd has no
// notification for it; the wait is short, a raft round trip.
func (s *Server) waitVoter(ctx context.Context) error {
	learner := s.learner
	if learner == nil {
		// A member process: ask it (Status is served by learners).
		c, err := Connect(ctx, ClientConfig{Endpoints: s.endpoints, TLS: s.tls})
		if err != nil {
			return fmt.Errorf("wait for the promotion to apply: %w", err)
		}
		defer c.Close()
		learner = func(ctx context.Context) (bool, error) {
			ctx, cancel := context.WithTimeout(ctx, c.timeout)
			defer cancel()
			st, err := c.cli.Status(ctx, s.endpoints[0])
			if err != nil {
				return true, err
			}
			return st.IsLearner, nil
		}
	}
	for {
		// An error is a server still busy applying: ask again.
		if l, err := learner(ctx); err == nil && !l {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the promotion to apply: %w", ctx.Err())
		case <-s.Done():
			return fmt.Errorf("wait for the promotion to apply: %w", ErrNotReady)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
