package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/mgmtconfig/mgmt/etcd"
)

// errNoCluster: a resource asked for the cluster's store, and the run has
// no cluster (etcd could not start for this graph).
var errNoCluster = errors.New("no cluster: etcd did not start for this graph (see the agent's log)")

// clusterKV is the engine's KV (engine.Env.KV): the store of the run's
// cluster, which may be reached after the engine started (a new graph
// that is the first to need it, a cached deploy run while the cluster is
// joined). Without a cluster a request fails at once, unless one is being
// joined (wait): it then waits for it, or for its context to end.
type clusterKV struct {
	wait  bool
	once  sync.Once
	ready chan struct{} // closed once store is set
	store *etcd.KVStore // set once, before ready is closed
}

func newClusterKV(wait bool) *clusterKV {
	return &clusterKV{wait: wait, ready: make(chan struct{})}
}

// attach makes c's store the one requests go to, once.
func (k *clusterKV) attach(c *etcd.Client) {
	k.once.Do(func() {
		k.store = c.KV()
		close(k.ready)
	})
}

func (k *clusterKV) get(ctx context.Context) (*etcd.KVStore, error) {
	select {
	case <-k.ready:
		return k.store, nil
	default:
	}
	if !k.wait {
		return nil, errNoCluster
	}
	select {
	case <-k.ready:
		return k.store, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (k *clusterKV) Get(ctx context.Context, key string) (string, bool, error) {
	s, err := k.get(ctx)
	if err != nil {
		return "", false, err
	}
	return s.Get(ctx, key)
}

func (k *clusterKV) CompareAndSwap(ctx context.Context, key string, old, value *string) (bool, error) {
	s, err := k.get(ctx)
	if err != nil {
		return false, err
	}
	return s.CompareAndSwap(ctx, key, old, value)
}

func (k *clusterKV) Watch(ctx context.Context, key string, changed func()) error {
	s, err := k.get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return s.Watch(ctx, key, changed)
}
