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
	"time"

	"github.com/mgmtconfig/mgmt/etcd/memberconf"
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

// Server is a running embedded etcd server: in this process, or in a
// child process running mgmt-etcd (see StartServer).
type Server struct {
	endpoints []string
	done      <-chan struct{}
	stop      func() // stops the server and waits for it
	stopOnce  sync.Once
	name      string
	tls       *TLSFiles
	learner   func(context.Context) (bool, error) // in-process only: whether still a learner
	pid       int                                 // of the mgmt-etcd process; 0 in-process
}

// ServerBinaryEnv names a mgmt-etcd program (cmd/mgmt-etcd) to run the
// server as a child process instead of the one the binary carries (a build
// with the mgmt_split_server tag) or of running it in-process (the default
// build).
const ServerBinaryEnv = "MGMT_ETCD_SERVER"

// StartServer starts an embedded etcd server and waits until it is ready to
// serve clients or until ctx ends or cfg.StartTimeout passes. A port already
// in use is reported at once (errors.Is(err, syscall.EADDRINUSE)).
//
// The default build runs the server in this process. A build with the
// mgmt_split_server tag does not link etcd's server: it runs the copy of
// mgmt-etcd it carries as a child process, which stops with its parent.
// With $MGMT_ETCD_SERVER set, either build runs that program instead.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	mc, err := cfg.memberConfig()
	if err != nil {
		return nil, err
	}
	return startServer(ctx, cfg, mc)
}

// Endpoints returns the client URLs this server advertises.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// Done is closed once the server has stopped, by Stop or by itself (for
// instance when it was removed from its cluster, or its process died).
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop ends open client RPCs, stops the server and waits for it. It is safe
// to call more than once.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }

// memberConfig checks cfg and applies its defaults.
func (cfg *ServerConfig) memberConfig() (memberconf.Config, error) {
	var mc memberconf.Config
	if cfg.Name == "" {
		return mc, fmt.Errorf("%w: the server needs a name (--hostname)", ErrConfig)
	}
	if cfg.DataDir == "" {
		return mc, fmt.Errorf("%w: the server needs a data directory", ErrConfig)
	}
	scheme := "http"
	if cfg.TLS != nil {
		if err := cfg.TLS.validate(); err != nil {
			return mc, err
		}
		scheme = "https"
		mc.TLS = &memberconf.TLS{CA: cfg.TLS.CA, Cert: cfg.TLS.Cert, Key: cfg.TLS.Key}
	}
	listenClient, err := parseURLs("client URL", cfg.ClientURLs, scheme+"://"+DefaultClientAddr, scheme)
	if err != nil {
		return mc, err
	}
	listenPeer, err := parseURLs("server URL", cfg.PeerURLs, scheme+"://"+DefaultPeerAddr, scheme)
	if err != nil {
		return mc, err
	}
	advClient, err := parseURLs("advertised client URL", cfg.AdvertiseClientURLs, "", scheme)
	if err != nil {
		return mc, err
	}
	if advClient == nil {
		advClient = listenClient
	}
	advPeer, err := parseURLs("advertised server URL", cfg.AdvertisePeerURLs, "", scheme)
	if err != nil {
		return mc, err
	}
	if advPeer == nil {
		advPeer = listenPeer
	}

	mc.Name = cfg.Name
	mc.DataDir = cfg.DataDir
	mc.ListenClientURLs = urlStrings(listenClient)
	mc.ListenPeerURLs = urlStrings(listenPeer)
	mc.AdvertiseClientURLs = urlStrings(advClient)
	mc.AdvertisePeerURLs = urlStrings(advPeer)
	mc.InitialCluster = cfg.InitialCluster
	mc.Existing = cfg.Existing
	mc.ClusterToken = "mgmt"
	if cfg.ClusterToken != "" {
		mc.ClusterToken = cfg.ClusterToken
	}
	if cfg.HeartbeatInterval > 0 {
		mc.TickMs = uint(cfg.HeartbeatInterval / time.Millisecond)
	}
	if cfg.ElectionTimeout > 0 {
		mc.ElectionMs = uint(cfg.ElectionTimeout / time.Millisecond)
	}
	mc.StartTimeout = cfg.StartTimeout
	if mc.StartTimeout <= 0 {
		mc.StartTimeout = 30 * time.Second
	}
	mc.MaxTxnOps = 4096
	if cfg.MaxTxnOps > 0 {
		mc.MaxTxnOps = cfg.MaxTxnOps
	}
	return mc, nil
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.String()
	}
	return out
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
