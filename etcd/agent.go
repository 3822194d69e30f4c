package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AgentConfig is what `mgmt run`'s etcd flags say.
type AgentConfig struct {
	Host string // --hostname
	// Seeds are client URLs of a running cluster (--seeds); none starts a
	// new cluster with this agent's server as its only member.
	Seeds []string
	// NoServer makes the agent only a client of Seeds (--no-server).
	NoServer bool
	// IdealClusterSize, if above zero, lets the agents choose which of them
	// run members (--ideal-cluster-size); see RunMembership.
	IdealClusterSize int
	// MembershipTTL: see MembershipConfig.TTL.
	MembershipTTL time.Duration
	// Server is the embedded server (--client-urls, --server-urls, TLS,
	// DataDir under --prefix). Its Name defaults to Host.
	Server ServerConfig
	// Client sets the client's TLS, timeouts, namespace and logger; its
	// Endpoints are chosen by StartAgent.
	Client ClientConfig
}

// Agent is an agent's place in the etcd cluster: always a client, and,
// unless it runs with NoServer, an embedded server when it is a member.
type Agent struct {
	client *Client
	// server: static membership only (RunMembership owns its own). The
	// join goroutine sets it; Stop reads it once that goroutine is done.
	server *Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartAgent starts what cfg asks for: a new single-member cluster (no
// seeds), a member joining the seeds' cluster, a client only (NoServer),
// or, with IdealClusterSize, a client that takes part in dynamic
// membership and becomes a member when the agents' leader says so. It
// returns once the client is connected (and a new cluster's server is
// ready).
//
// A joining agent is a client of the seeds at once, so that it exchanges
// exports as soon as it reaches the cluster; its server joins in the
// background (see Join), trying again until it is a member, and the
// client then talks to it too. etcd takes one new member at a time and
// none within 5 s of the previous change, so hosts started together
// become members one after the other, seconds apart, while all of them
// exchange from the start. An agent whose server has a member's data (it
// was restarted) starts it again before it returns, as Join does.
func StartAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	if cfg.Host == "" {
		return nil, fmt.Errorf("%w: an agent needs a host name", ErrConfig)
	}
	if cfg.Server.Name == "" {
		cfg.Server.Name = cfg.Host
	}
	if cfg.NoServer && len(cfg.Seeds) == 0 {
		return nil, fmt.Errorf("%w: --no-server needs --seeds", ErrConfig)
	}
	if cfg.Client.TLS == nil {
		cfg.Client.TLS = cfg.Server.TLS
	}
	connect := func(eps []string) (*Client, error) {
		cc := cfg.Client
		cc.Endpoints = eps
		return Connect(ctx, cc)
	}
	a := &Agent{cancel: func() {}}
	var err error
	switch {
	case cfg.NoServer:
		a.client, err = connect(cfg.Seeds)
		if err != nil {
			return nil, err
		}
	case len(cfg.Seeds) == 0:
		if a.server, err = StartServer(ctx, cfg.Server); err != nil {
			return nil, err
		}
		if a.client, err = connect(a.server.Endpoints()); err != nil {
			a.server.Stop()
			return nil, err
		}
	case cfg.IdealClusterSize > 0:
		if a.client, err = connect(cfg.Seeds); err != nil {
			return nil, err
		}
	default:
		if _, err := cfg.Server.memberConfig(); err != nil {
			return nil, err
		}
		if a.client, err = connect(cfg.Seeds); err != nil {
			return nil, err
		}
		if hasData(cfg.Server.DataDir) {
			// A member restarted: nothing to wait for, and its cluster may
			// need it back for a quorum (two members, one of them this
			// one) before the exchange can work at all.
			began := time.Now()
			if s, err := Join(ctx, a.client, cfg.Server); err == nil {
				a.joined(s, began)
			} else {
				a.client.log.Warn("restarting the etcd member failed; joining in the background", "member", cfg.Server.Name, "err", err)
			}
		}
		if a.server == nil {
			jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			a.cancel = cancel
			a.wg.Go(func() { a.join(jctx, cfg.Server) })
		}
	}
	if cfg.IdealClusterSize > 0 && !cfg.NoServer {
		mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		a.cancel = cancel
		running := a.server
		a.server = nil // RunMembership owns it now
		mcfg := MembershipConfig{Host: cfg.Host, IdealSize: cfg.IdealClusterSize, Server: cfg.Server, TTL: cfg.MembershipTTL}
		a.wg.Go(func() {
			if err := a.client.RunMembership(mctx, mcfg, running); err != nil && !errors.Is(err, context.Canceled) {
				a.client.log.Error("dynamic membership stopped", "err", err)
			}
		})
	}
	return a, nil
}

// join makes the agent's server a member of the client's cluster, trying
// again with a growing delay until it is one or ctx ends, and adds the
// server to the client's endpoints.
func (a *Agent) join(ctx context.Context, cfg ServerConfig) {
	began := time.Now()
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		s, err := Join(ctx, a.client, cfg)
		if err == nil {
			a.joined(s, began)
			return
		}
		if ctx.Err() != nil {
			return
		}
		a.client.log.Warn("joining the etcd cluster failed; trying again", "member", cfg.Name, "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// joined keeps s, the agent's server, now a voting member, and adds it to
// the client's endpoints.
func (a *Agent) joined(s *Server, began time.Time) {
	a.server = s
	a.client.cli.SetEndpoints(append(s.Endpoints(), a.client.cli.Endpoints()...)...)
	a.client.log.Info("joined the etcd cluster", "member", s.name, "endpoints", s.Endpoints(), "after", time.Since(began).Round(time.Millisecond))
}

// Client returns the agent's connection to the cluster, for Publish and
// WatchExports.
func (a *Agent) Client() *Client { return a.client }

// Stop ends a join still under way (removing a half-added member) or
// leaves dynamic membership (if any), closes the client and stops the
// embedded server.
func (a *Agent) Stop() {
	a.cancel()
	a.wg.Wait()
	a.client.Close()
	if a.server != nil {
		a.server.Stop()
	}
}
