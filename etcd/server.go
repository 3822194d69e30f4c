// Package etcd runs the embedded etcd server every agent carries, connects
// agents to their cluster and exchanges exported resources between hosts.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
)

// Defaults for an agent's embedded server: loopback only, so that a single
// host exposes nothing until the user says which addresses to serve.
const (
	DefaultClientAddr = "127.0.0.1:2379"
	DefaultPeerAddr   = "127.0.0.1:2380"
)

var (
	// ErrConfig reports a configuration that cannot work; the message says
	// which setting is wrong.
	ErrConfig = errors.New("invalid etcd configuration")
	// ErrNotReady reports a server that did not become ready (elect a
	// leader, or join its cluster) within its start timeout.
	ErrNotReady = errors.New("etcd server not ready")
)

// ServerConfig describes an embedded etcd server. Only Name and DataDir are
// required; everything else has a default fit for one host.
type ServerConfig struct {
	Name    string // member name, unique in the cluster: the agent's --hostname
	DataDir string // where etcd keeps its data, e.g. <--prefix>/etcd

	// ClientURLs and PeerURLs are the addresses to listen on (--client-urls,
	// --server-urls). They default to http://127.0.0.1:2379 and :2380, or
	// https:// with TLS.
	ClientURLs []string
	PeerURLs   []string
	// AdvertiseClientURLs and AdvertisePeerURLs are the addresses other
	// agents and members reach this server at; they default to the listen
	// addresses, which must then be specific (not 0.0.0.0).
	AdvertiseClientURLs []string
	AdvertisePeerURLs   []string

	// InitialCluster lists the members of a cluster being formed or joined,
	// as etcd spells it: "name=peerURL,name=peerURL". Empty means a new
	// cluster of this server alone. It is ignored once DataDir holds data.
	InitialCluster string
	// Existing joins a running cluster that already lists this member
	// (initial-cluster-state=existing): see Join, which arranges it.
	Existing bool
	// ClusterToken tells apart clusters formed on the same network. It
	// defaults to "mgmt".
	ClusterToken string

	// TLS, if set, secures both client and peer traffic; plain connections
	// and certificates not signed by the CA are refused.
	TLS *TLSFiles

	// HeartbeatInterval and ElectionTimeout tune raft (defaults 100 ms and
	// 1 s, etcd's own). Tests shorten them.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// StartTimeout bounds the wait for the server to be ready (default 30 s).
	StartTimeout time.Duration
	// MaxTxnOps bounds the operations in one transaction (default 4096, so
	// that a host can replace thousands of exports at once; etcd's own
	// default is 128).
	MaxTxnOps uint

	// Logger receives etcd's warnings (at debug level) and errors (at warn
	// level); nil discards them.
	Logger *slog.Logger
}

// Server is a running embedded etcd server.
type Server struct {
	e         *embed.Etcd
	endpoints []string
	stopOnce  sync.Once
	stopRPCs  context.CancelFunc // ends client RPCs still open at Stop, watches included
	stopping  *atomic.Bool       // set by Stop: what etcd logs from then on is shutdown noise
}

// StartServer starts an embedded etcd server and waits until it is ready to
// serve clients or until ctx ends or cfg.StartTimeout passes. A port already
// in use is reported at once (errors.Is(err, syscall.EADDRINUSE)).
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	ecfg, err := cfg.embedConfig()
	if err != nil {
		return nil, err
	}
	stopping := new(atomic.Bool)
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLoggerStopping(cfg.Logger, stopping))
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

func (cfg *ServerConfig) embedConfig() (*embed.Config, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("%w: the server needs a name (--hostname)", ErrConfig)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: the server needs a data directory", ErrConfig)
	}
	scheme := "http"
	if cfg.TLS != nil {
		if err := cfg.TLS.validate(); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	listenClient, err := parseURLs("client URL", cfg.ClientURLs, scheme+"://"+DefaultClientAddr, scheme)
	if err != nil {
		return nil, err
	}
	listenPeer, err := parseURLs("server URL", cfg.PeerURLs, scheme+"://"+DefaultPeerAddr, scheme)
	if err != nil {
		return nil, err
	}
	advClient, err := parseURLs("advertised client URL", cfg.AdvertiseClientURLs, "", scheme)
	if err != nil {
		return nil, err
	}
	if advClient == nil {
		advClient = listenClient
	}
	advPeer, err := parseURLs("advertised server URL", cfg.AdvertisePeerURLs, "", scheme)
	if err != nil {
		return nil, err
	}
	if advPeer == nil {
		advPeer = listenPeer
	}

	ecfg := embed.NewConfig()
	ecfg.Name = cfg.Name
	ecfg.Dir = cfg.DataDir
	ecfg.ListenClientUrls = listenClient
	ecfg.ListenPeerUrls = listenPeer
	ecfg.AdvertiseClientUrls = advClient
	ecfg.AdvertisePeerUrls = advPeer
	if cfg.InitialCluster != "" {
		ecfg.InitialCluster = cfg.InitialCluster
	} else {
		ecfg.InitialCluster = ecfg.InitialClusterFromName(cfg.Name)
	}
	if cfg.Existing {
		ecfg.ClusterState = embed.ClusterStateFlagExisting
	}
	ecfg.InitialClusterToken = "mgmt"
	if cfg.ClusterToken != "" {
		ecfg.InitialClusterToken = cfg.ClusterToken
	}
	if cfg.TLS != nil {
		ecfg.ClientTLSInfo = cfg.TLS.info()
		ecfg.PeerTLSInfo = cfg.TLS.info()
	}
	if cfg.HeartbeatInterval > 0 {
		ecfg.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	}
	if cfg.ElectionTimeout > 0 {
		ecfg.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	}
	ecfg.MaxTxnOps = 4096
	if cfg.MaxTxnOps > 0 {
		ecfg.MaxTxnOps = cfg.MaxTxnOps
	}
	// Every publish makes a revision; keep an hour of history so that a
	// watcher that fell behind can still catch up, and no more.
	ecfg.AutoCompactionMode = "periodic"
	ecfg.AutoCompactionRetention = "1h"
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapLogger(cfg.Logger))
	return ecfg, nil
}

// parseURLs parses raw (or def if raw is empty and def is not) and checks
// that every URL uses scheme, so that TLS is never half configured.
func parseURLs(what string, raw []string, def string, scheme string) ([]url.URL, error) {
	if len(raw) == 0 {
		if def == "" {
			return nil, nil
		}
		raw = []string{def}
	}
	var out []url.URL
	for _, r := range raw {
		for _, s := range strings.Split(r, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			u, err := url.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %q: %w", ErrConfig, what, s, err)
			}
			if u.Scheme != scheme || u.Host == "" {
				return nil, fmt.Errorf("%w: %s %q: want %s://host:port (TLS configured: %v)",
					ErrConfig, what, s, scheme, scheme == "https")
			}
			out = append(out, *u)
		}
	}
	return out, nil
}
