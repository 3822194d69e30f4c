package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// ClusterConfig says how an agent reaches the other hosts.
type ClusterConfig struct {
	Seeds      []string // client URLs of an existing cluster to join
	NoServer   bool     // be a client of Seeds only, run no embedded server
	ClientURLs []string // where the embedded server listens for clients
	ServerURLs []string // where it listens for peers
	// AdvertiseClientURLs / AdvertiseServerURLs: how others reach this
	// server, when the listen addresses are not enough (0.0.0.0).
	AdvertiseClientURLs []string
	AdvertiseServerURLs []string
	TLS                 *etcd.TLSFiles
	// IdealClusterSize > 0: the agents choose among themselves which run
	// etcd members, up to this many, replacing members that die.
	IdealClusterSize int
	Namespace        string        // key prefix; agents with different namespaces do not see each other
	DialTimeout      time.Duration // for seeds; 0: the etcd package's default
}

// wanted: the flags alone ask for a cluster, whatever the graph says.
func (c ClusterConfig) wanted() bool {
	return len(c.Seeds) > 0 || c.NoServer || len(c.ClientURLs) > 0 || len(c.ServerURLs) > 0 || c.IdealClusterSize > 0
}

// needsCluster: the graph exports or collects resources, or holds one
// of a kind that needs the cluster (engine.ClusterUser: kv).
func needsCluster(yg *yamlgraph.Graph) bool {
	if len(yg.Collect) > 0 {
		return true
	}
	for _, v := range yg.Vertices {
		if cu, ok := v.Res.(engine.ClusterUser); v.Exported || ok && cu.NeedsCluster() {
			return true
		}
	}
	return false
}

// NeedsCluster reports whether a graph exchanges anything through the
// cluster (needsCluster): `run --remote` gives such a graph its etcd.
func NeedsCluster(yg *yamlgraph.Graph) bool { return needsCluster(yg) }

// cluster is the agent's embedded server (if any) and its client.
type cluster struct {
	agent     *etcd.Agent
	client    *etcd.Client
	host      string
	log       *slog.Logger
	cancel    context.CancelFunc // ends the publisher and the exports watch
	want      chan []etcd.Export // one slot: the newest set to publish
	published chan struct{}      // closed when the publisher has returned
	depool    *depool            // between publish and the publisher (depool.go)
	stopEtcd  func()             // c.agent.Stop; tests make it hang
	bg        sync.WaitGroup     // what else uses the client: the status publisher, the deploy watch
}

// collectedRes is one resource another host exports, as this host will
// manage it.
type collectedRes struct {
	host, kind, name string
	res              engine.Res
}

// startCluster starts or joins etcd and publishes this host's exports;
// follow then watches the other hosts' exports of the collected kinds.
func (r *runner) startCluster(ctx context.Context, yg *yamlgraph.Graph) error {
	a, err := r.startAgent(ctx)
	if err != nil {
		return err
	}
	r.attachCluster(ctx, a, yg)
	return nil
}

// startAgent starts or joins etcd as the flags say.
func (r *runner) startAgent(ctx context.Context) (*etcd.Agent, error) {
	cc := r.cfg.Cluster
	elog := r.log.With("component", "etcd")
	a, err := etcd.StartAgent(ctx, etcd.AgentConfig{
		Host:             r.cfg.Hostname,
		Seeds:            cc.Seeds,
		NoServer:         cc.NoServer,
		IdealClusterSize: cc.IdealClusterSize,
		Server: etcd.ServerConfig{
			DataDir:             filepath.Join(r.cfg.Prefix, "etcd"),
			ClientURLs:          cc.ClientURLs,
			PeerURLs:            cc.ServerURLs,
			AdvertiseClientURLs: cc.AdvertiseClientURLs,
			AdvertisePeerURLs:   cc.AdvertiseServerURLs,
			TLS:                 cc.TLS,
			Logger:              elog,
		},
		Client: etcd.ClientConfig{TLS: cc.TLS, DialTimeout: cc.DialTimeout, Namespace: cc.Namespace, Logger: elog},
	})
	if err != nil {
		if errors.Is(err, etcd.ErrConfig) {
			return nil, &InvalidError{err}
		}
		return nil, &StartError{fmt.Errorf("etcd: %w", err)}
	}
	return a, nil
}

// attachCluster makes a the run's cluster: this host's exports and status
// are published through it, and, run from the cluster, its deploys
// followed.
func (r *runner) attachCluster(ctx context.Context, a *etcd.Agent, yg *yamlgraph.Graph) {
	cc := r.cfg.Cluster
	c := &cluster{host: r.cfg.Hostname, log: r.log, agent: a}
	c.client = c.agent.Client()
	c.stopEtcd = c.agent.Stop
	r.log.Info("etcd ready", "seeds", cc.Seeds, "no_server", cc.NoServer, "ideal_cluster_size", cc.IdealClusterSize)
	r.cluster = c
	if r.kv != nil {
		r.kv.attach(c.client)
	}
	cctx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.want = make(chan []etcd.Export, 1)
	c.published = make(chan struct{})
	go c.publisher(cctx)
	c.depool = startDepool(cctx, c)
	c.publish(yg)
	r.status.publish(cctx, &c.bg, c.client, r.cfg.Hostname, c.depool, r.log)
	if r.fc != nil {
		c.bg.Go(func() { r.watchDeploys(cctx, c.client) })
	}
}

// joinIfNeeded starts etcd for a new graph that is the first of the run
// to need the cluster (needsCluster). If it cannot start, the graph runs
// without the cluster (what it exports is not published, nothing is
// collected) and the next new graph tries again.
func (r *runner) joinIfNeeded(ctx context.Context, yg *yamlgraph.Graph) {
	if r.cluster != nil || r.fc != nil || !needsCluster(yg) {
		return
	}
	r.log.Info("the new graph exports or collects resources, or keeps values in the cluster: starting etcd")
	if err := r.startCluster(ctx, yg); err != nil {
		r.log.Error("etcd could not start: exports not published, nothing collected; the next change of the graph file tries again", "err", err)
	}
}

// exportsWatch follows other hosts' exports of some kinds.
type exportsWatch struct {
	kinds  []string // sorted
	snaps  <-chan []etcd.Export
	cancel context.CancelFunc
}

// snaps is the channel of the current watch, nil (never ready) without one.
func (r *runner) snaps() <-chan []etcd.Export {
	if r.watch == nil {
		return nil
	}
	return r.watch.snaps
}

// follow makes the exports watch match r.yg's collect entries: started,
// restarted with other kinds, or stopped. The newest snapshot stays until
// the new watch delivers its first; build leaves out what it holds of
// kinds no longer collected, and uses the new patterns at once.
func (r *runner) follow(ctx context.Context) error {
	kinds := collectKinds(r.yg)
	if r.watch != nil && slices.Equal(r.watch.kinds, kinds) {
		return nil
	}
	r.unfollow()
	if len(kinds) == 0 {
		r.snap = nil
		return nil
	}
	if r.cluster == nil {
		return nil // joinIfNeeded said why
	}
	wctx, cancel := context.WithCancel(ctx)
	snaps, err := r.cluster.client.WatchExports(wctx, r.cfg.Hostname, kinds)
	if err != nil {
		cancel()
		return fmt.Errorf("watch exported resources: %w", err)
	}
	r.watch = &exportsWatch{kinds: kinds, snaps: snaps, cancel: cancel}
	return nil
}

// unfollow ends the exports watch, if any, and waits for its goroutine:
// the etcd package closes the channel when it returns.
func (r *runner) unfollow() {
	if r.watch == nil {
		return
	}
	r.watch.cancel()
	for range r.watch.snaps {
	}
	r.watch = nil
}

// collectKinds are the kinds yg collects, sorted, each once.
func collectKinds(yg *yamlgraph.Graph) []string {
	var kinds []string
	for _, col := range yg.Collect {
		kinds = append(kinds, col.Kind)
	}
	slices.Sort(kinds)
	return slices.Compact(kinds)
}

// collectPatterns maps each kind yg collects to the pattern of its first
// collect entry.
func collectPatterns(yg *yamlgraph.Graph) map[string]string {
	patterns := map[string]string{}
	for _, col := range yg.Collect {
		if _, dup := patterns[col.Kind]; !dup {
			patterns[col.Kind] = col.Pattern
		}
	}
	return patterns
}

// decodeCollected turns other hosts' exports into resources for this host,
// each through its kind's Collect (a file is re-based into the pattern
// directory). One that is refused is logged and left out.
func (r *runner) decodeCollected(snap []etcd.Export, patterns map[string]string) []collectedRes {
	var out []collectedRes
	for _, ex := range snap {
		pattern, ok := patterns[ex.Kind]
		if !ok {
			continue
		}
		src := fmt.Sprintf("etcd:%s", ex.Host)
		res, err := yamlgraph.DecodeRes(src, ex.Kind, ex.Name, ex.Params)
		if err == nil {
			col, ok := res.(engine.Collector)
			if !ok {
				err = fmt.Errorf("kind %s cannot be collected", ex.Kind)
			} else {
				res, err = col.Collect(pattern)
			}
		}
		if err != nil {
			r.log.Warn("collected resource refused", "host", ex.Host, "res", ex.Kind+"["+ex.Name+"]", "err", err)
			continue
		}
		out = append(out, collectedRes{host: ex.Host, kind: ex.Kind, name: ex.Name, res: res})
	}
	return out
}

// collectedVertices validates the collected resources against this graph:
// one whose kind and name a local resource already has is left out.
func (r *runner) collectedVertices(yg *yamlgraph.Graph, remote []collectedRes) []*engine.Vertex {
	if len(remote) == 0 {
		return nil // nothing collected: no index of the local graph (4.5 MB for 10,000 files)
	}
	taken := map[engine.Ref]bool{}
	for _, v := range yg.Vertices {
		taken[engine.Ref{Kind: v.Kind, Name: v.Name}] = true
	}
	owned := map[engine.UID]bool{} // what local resources manage
	for _, v := range yg.Vertices {
		if u, ok := v.Res.(engine.UIDer); ok {
			for _, uid := range u.UIDs() {
				owned[uid] = true
			}
		}
	}
	var out []*engine.Vertex
	for _, c := range remote {
		ref := engine.Ref{Kind: c.kind, Name: c.name}
		if taken[ref] {
			r.log.Warn("collected resource left out: a resource of that name exists here", "host", c.host, "res", ref.String())
			continue
		}
		if uid, clash := clashes(c.res, owned); clash {
			r.log.Warn("collected resource left out: something here already manages what it would", "host", c.host, "res", ref.String(), "manages", uid.Kind+" "+uid.Key)
			continue
		}
		v, err := yamlgraph.NewVertex(c.kind, c.name, false, engine.DefaultMeta(), c.res)
		if err != nil {
			r.log.Warn("collected resource refused", "host", c.host, "res", ref.String(), "err", err)
			continue
		}
		v.Source = "etcd:" + c.host
		taken[ref] = true
		if u, ok := c.res.(engine.UIDer); ok {
			for _, uid := range u.UIDs() {
				owned[uid] = true
			}
		}
		out = append(out, v)
	}
	return out
}

// clashes reports a UID of res that is already owned: two resources must
// never manage one thing, and a collected one yields to what is here.
func clashes(res engine.Res, owned map[engine.UID]bool) (engine.UID, bool) {
	u, ok := res.(engine.UIDer)
	if !ok {
		return engine.UID{}, false
	}
	for _, uid := range u.UIDs() {
		if owned[uid] {
			return uid, true
		}
	}
	return engine.UID{}, false
}

// publish asks for this host's exports in etcd to be replaced with those
// of yg, in one transaction. The publisher goroutine does it, trying again
// until it succeeds or a newer set replaces this one: a publish that fails
// while the cluster is cut off is not lost.
func (c *cluster) publish(yg *yamlgraph.Graph) {
	exports := []etcd.Export{}
	for _, v := range yg.Vertices {
		if !v.Exported {
			continue
		}
		params, err := yamlgraph.Params(v.Res)
		if err != nil {
			c.log.Error("export left out: cannot encode it", "res", v.String(), "err", err)
			continue
		}
		exports = append(exports, etcd.Export{Host: c.host, Kind: v.Kind, Name: v.Name, Params: params})
	}
	sort.Slice(exports, func(i, j int) bool { return exports[i].Kind+exports[i].Name < exports[j].Kind+exports[j].Name })
	c.depool.offer(exports)
}

// publisher publishes each set publish asks for, retrying with a growing
// delay while etcd cannot take it.
func (c *cluster) publisher(ctx context.Context) {
	defer close(c.published)
	for {
		var exports []etcd.Export
		select {
		case <-ctx.Done():
			return
		case exports = <-c.want:
		}
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			err := c.client.Publish(ctx, c.host, exports)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("publish exported resources failed; trying again", "err", err, "in", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case exports = <-c.want: // a newer set: publish that instead
				t.Stop()
			}
		}
	}
}

// close stops publishing, then leaves etcd. An etcd that has not
// stopped when ctx ends (a peer gone, a leader that cannot be told) is left
// stopping: the process is about to exit.
func (c *cluster) close(ctx context.Context) {
	c.cancel()
	stopped := make(chan struct{})
	go func() {
		// Each of these ends with c's context, or with etcd answering; a
		// member that hangs (a frozen peer) must not stretch the stop, so
		// all of them, not only etcd's own stop, run under the deadline.
		defer close(stopped)
		<-c.published // Publish returns as soon as its context ends
		c.bg.Wait()   // the status lease revoked: the host stopped
		if c.depool != nil {
			<-c.depool.done
		}
		c.stopEtcd()
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		c.log.Warn("etcd still stopping at the stop deadline: leaving it")
	}
}
