//go:build !mgmt_split_server

package etcd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mgmtconfig/mgmt/etcd/member"
	"github.com/mgmtconfig/mgmt/etcd/memberconf"
)

// startServer runs the server in this process, or the mgmt-etcd program
// $MGMT_ETCD_SERVER names as a child process.
func startServer(ctx context.Context, cfg ServerConfig, mc memberconf.Config) (*Server, error) {
	if bin := os.Getenv(ServerBinaryEnv); bin != "" {
		return startServerProcess(ctx, cfg, mc, bin)
	}
	m, err := member.Start(ctx, mc, cfg.Logger)
	if err != nil {
		if errors.Is(err, member.ErrNotReady) {
			err = fmt.Errorf("%w: %w", ErrNotReady, err)
		}
		return nil, err
	}
	return &Server{
		endpoints: m.Endpoints(),
		done:      m.Done(),
		stop:      m.Stop,
		name:      cfg.Name,
		tls:       cfg.TLS,
		learner:   func(context.Context) (bool, error) { return m.IsLearner(), nil },
	}, nil
}
