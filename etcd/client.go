package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrUnreachable reports that no endpoint answered within the dial timeout.
var ErrUnreachable = errors.New("etcd unreachable")

// DefaultNamespace is the key prefix under which agents keep their data.
const DefaultNamespace = "/mgmt/"

// ClientConfig describes a connection to an etcd cluster.
type ClientConfig struct {
	// Endpoints are client URLs of cluster members (--seeds, or the
	// embedded server's Endpoints).
	Endpoints []string
	// TLS, if set, presents Cert to the servers and trusts only CA.
	TLS *TLSFiles
	// DialTimeout bounds Connect (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds each request the client makes on its own,
	// such as the reads and writes inside Publish (default 5 s).
	RequestTimeout time.Duration
	// Namespace is the key prefix for all of mgmt's keys (default
	// DefaultNamespace); agents sharing a cluster but not their exports use
	// different namespaces.
	Namespace string
	// Logger receives the etcd client's warnings (at debug level) and
	// errors (at warn level) and the exchange's own notes (a watch read
	// again); nil discards them.
	Logger *slog.Logger
}

// Client is a connection to an etcd cluster, safe for concurrent use.
type Client struct {
	cli     *clientv3.Client
	ns      string
	timeout time.Duration
	log     *slog.Logger
	wg      sync.WaitGroup // goroutines started by WatchExports
}

// Connect dials the cluster and checks that it answers: an unreachable
// endpoint is ErrUnreachable after cfg.DialTimeout, not a hang.
func Connect(ctx context.Context, cfg ClientConfig) (*Client, error) {
	var eps []string
	for _, e := range cfg.Endpoints {
		for _, s := range strings.Split(e, ",") {
			if s = strings.TrimSpace(s); s != "" {
				eps = append(eps, s)
			}
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%w: no etcd endpoints (--seeds)", ErrConfig)
	}
	dial := cfg.DialTimeout
	if dial <= 0 {
		dial = 5 * time.Second
	}
	ccfg := clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          dial,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zapLogger(cfg.Logger),
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.clientConfig()
		if err != nil {
			return nil, err
		}
		ccfg.TLS = tc
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", eps, err)
	}
	// clientv3.New does not wait for a connection: ask for something that
	// needs one, bounded by the dial timeout.
	pctx, cancel := context.WithTimeout(ctx, dial)
	_, err = cli.Get(pctx, "health", clientv3.WithSerializable(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		cli.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to etcd %v: %w", eps, ctx.Err())
		}
		return nil, fmt.Errorf("connect to etcd %v: %w: %w", eps, ErrUnreachable, err)
	}
	c := &Client{
		cli:     cli,
		ns:      DefaultNamespace,
		timeout: cfg.RequestTimeout,
		log:     cfg.Logger,
	}
	if cfg.Namespace != "" {
		c.ns = strings.TrimSuffix(cfg.Namespace, "/") + "/"
	}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Close ends the connection and waits for the goroutines of WatchExports,
// whose channels it closes.
func (c *Client) Close() error {
	err := c.cli.Close()
	c.wg.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Endpoints returns the endpoints the client currently uses.
func (c *Client) Endpoints() []string { return c.cli.Endpoints() }

// closed reports whether Close was called.
func (c *Client) closed() bool { return c.cli.Ctx().Err() != nil }
