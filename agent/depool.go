package agent

import (
	"context"
	"sync"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/etcd"
)

// depool follows this host's depool key (NS deploy/depool/<host>, set by
// a rollout for a host that failed within its failure budget) and stands
// between the graph's exports and the publisher: while the host is
// depooled it publishes none, so that the hosts collecting them (a load
// balancer's backends) drop this one; when the key goes, the graph's
// exports are published again.
type depool struct {
	c       *cluster
	mu      sync.Mutex    // guards exports, offered, on; held while handing a set to the publisher
	exports []etcd.Export // the running graph's exports
	offered bool          // exports has been set once
	on      int64         // the deploy this host was depooled on; 0: in the pool
	changed chan struct{} // one slot: on changed (for the status publisher)
	done    chan struct{} // closed when the watch has ended
}

// startDepool follows the key until ctx ends; wait on done to join it.
func startDepool(ctx context.Context, c *cluster) *depool {
	d := &depool{c: c, changed: make(chan struct{}, 1), done: make(chan struct{})}
	ch := deploy.NewStore(c.client).WatchDepool(ctx, c.host)
	go func() {
		defer close(d.done)
		for n := range ch {
			d.set(n)
		}
	}()
	return d
}

// offer hands the graph's exports to the publisher, or none while the
// host is depooled.
func (d *depool) offer(exports []etcd.Export) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.exports, d.offered = exports, true
	d.sendLocked()
}

func (d *depool) sendLocked() {
	set := d.exports
	if d.on != 0 {
		set = []etcd.Export{}
	}
	select { // the newest set replaces one not yet published; senders hold mu, so the send cannot block
	case <-d.c.want:
	default:
	}
	d.c.want <- set
}

func (d *depool) set(n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n == d.on {
		return
	}
	d.on = n
	if n != 0 {
		d.c.log.Warn("depooled by a rollout: exports withdrawn until a newer deploy converges", "deploy", n)
	} else {
		d.c.log.Info("back in the pool: exports published again")
	}
	if d.offered {
		d.sendLocked()
	}
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// depooledOn is the deploy number this host is depooled on, 0 when it is
// in the pool (or has no cluster). The status publisher says "depooled"
// while it is not 0.
func (r *runner) depooledOn() int64 {
	if r.cluster == nil || r.cluster.depool == nil {
		return 0
	}
	d := r.cluster.depool
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}

// depoolChanged is ready when depooledOn may have changed; nil (never
// ready) without a cluster.
func (r *runner) depoolChanged() <-chan struct{} {
	if r.cluster == nil || r.cluster.depool == nil {
		return nil
	}
	return r.cluster.depool.changed
}

// number is the deploy number the host is depooled on, 0 in the pool; a
// nil d (no cluster yet) is in the pool.
func (d *depool) number() int64 {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.on
}
