// Package member runs an embedded etcd server from a memberconf.Config; it
// is the only package that links etcd's server, used in-process by the
// default build and by the mgmt-etcd program (cmd/mgmt-etcd) otherwise.
package member

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"

	"github.com/mgmtconfig/mgmt/etcd/memberconf"
	"github.com/mgmtconfig/mgmt/etcd/zapslog"
)

// ErrNotReady reports a server that did not become ready (elect a leader,
// or join its cluster) within its start timeout.
var ErrNotReady = errors.New("not ready")

// Server is a running embedded etcd server.
type Server struct {
	e         *embed.Etcd
	endpoints []string
	stopOnce  sync.Once
	stopRPCs  context.CancelFunc // ends client RPCs still open at Stop, watches included
	stopping  *atomic.Bool       // set by Stop: what etcd logs from then on is shutdown noise
}

// Start starts an embedded etcd server and waits until it is ready to serve
// clients or until ctx ends or cfg.StartTimeout passes. A port already in
// use is reported at once (errors.Is(err, syscall.EADDRINUSE)). log
// receives etcd's warnings and errors (see zapslog.New); nil discards them.
func Start(ctx context.Context, cfg memberconf.Config, log *slog.Logger) (*Server, error) {
	ecfg, err := embedConfig(cfg)
	if err != nil {
		return nil, err
	}
	stopping := new(atomic.Bool)
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapslog.New(log, stopping))
	stopCtx, stopRPCs := context.WithCancel(context.Background())
	ecfg.GRPCAdditionalServerOptions = []grpc.ServerOption{
		grpc.ChainStreamInterceptor(stopStreamInterceptor(stopCtx)),
	}
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		stopRPCs()
		return nil, fmt.Errorf("start etcd server %q: %w", cfg.Name, err)
	}
	s := &Server{e: e, stopRPCs: stopRPCs, stopping: stopping}
	for _, u := range ecfg.AdvertiseClientUrls {
		s.endpoints = append(s.endpoints, u.String())
	}

	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return s, nil
	case err = <-e.Err():
		err = fmt.Errorf("etcd server %q: %w", cfg.Name, err)
	case <-e.Server.StopNotify():
		err = fmt.Errorf("etcd server %q stopped while starting: %w", cfg.Name, ErrNotReady)
	case <-timer.C:
		err = fmt.Errorf("etcd server %q not ready after %v (no quorum?): %w", cfg.Name, timeout, ErrNotReady)
	case <-ctx.Done():
		err = fmt.Errorf("etcd server %q: %w", cfg.Name, ctx.Err())
	}
	s.Stop()
	return nil, err
}

// Endpoints returns the client URLs this server advertises.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Done is closed once the server has stopped, by Stop or by itself (for
// instance when it was removed from its cluster).
func (s *Server) Done() <-chan struct{} { return s.e.Server.StopNotify() }

// IsLearner reports whether the server is a learner (not yet promoted to
// a voting member).
func (s *Server) IsLearner() bool { return s.e.Server.IsLearner() }

// Stop ends open client RPCs, stops the server and waits for it. It is safe
// to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		// etcd logs its listeners closing as errors ("serving ... failed:
		// server closed"): at a stop we asked for, they are debug notes.
		s.stopping.Store(true)
		// Watch streams would otherwise hold etcd's graceful shutdown for its
		// request timeout (over 5 s).
		s.stopRPCs()
		select {
		case <-s.e.Server.ReadyNotify():
		default:
			// etcd's Close waits for its client servers, which wait for
			// the server to be ready or stopping: a server that never got
			// ready (no quorum) must be stopped first.
			s.e.Server.HardStop()
		}
		s.e.Close()
	})
}

// stopStreamInterceptor gives every streaming RPC (watches, lease
// keep-alives) a context that also ends when stop ends, so that the server
// can shut down without waiting for clients to hang up.
func stopStreamInterceptor(stop context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		unhook := context.AfterFunc(stop, cancel)
		defer unhook()
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func embedConfig(cfg memberconf.Config) (*embed.Config, error) {
	var err error
	ecfg := embed.NewConfig()
	ecfg.Name = cfg.Name
	ecfg.Dir = cfg.DataDir
	for _, f := range []struct {
		dst *[]url.URL
		src []string
	}{
		{&ecfg.ListenClientUrls, cfg.ListenClientURLs},
		{&ecfg.ListenPeerUrls, cfg.ListenPeerURLs},
		{&ecfg.AdvertiseClientUrls, cfg.AdvertiseClientURLs},
		{&ecfg.AdvertisePeerUrls, cfg.AdvertisePeerURLs},
	} {
		if *f.dst, err = parseURLs(f.src); err != nil {
			return nil, err
		}
	}
	if cfg.InitialCluster != "" {
		ecfg.InitialCluster = cfg.InitialCluster
	} else {
		ecfg.InitialCluster = ecfg.InitialClusterFromName(cfg.Name)
	}
	if cfg.Existing {
		ecfg.ClusterState = embed.ClusterStateFlagExisting
	}
	ecfg.InitialClusterToken = cfg.ClusterToken
	if cfg.TLS != nil {
		info := transport.TLSInfo{
			CertFile:       cfg.TLS.Cert,
			KeyFile:        cfg.TLS.Key,
			TrustedCAFile:  cfg.TLS.CA,
			ClientCertAuth: true,
		}
		ecfg.ClientTLSInfo = info
		ecfg.PeerTLSInfo = info
	}
	if cfg.TickMs > 0 {
		ecfg.TickMs = cfg.TickMs
	}
	if cfg.ElectionMs > 0 {
		ecfg.ElectionMs = cfg.ElectionMs
	}
	ecfg.MaxTxnOps = cfg.MaxTxnOps
	// Every publish makes a revision; keep an hour of history so that a
	// watcher that fell behind can still catch up, and no more.
	ecfg.AutoCompactionMode = "periodic"
	ecfg.AutoCompactionRetention = "1h"
	return ecfg, nil
}

func parseURLs(raw []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(raw))
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("etcd URL %q: %w", r, err)
		}
		out = append(out, *u)
	}
	return out, nil
}
