// Package engine runs a graph of resources: one goroutine per vertex, each
// watching what it manages and repairing drift as soon as it is seen.
package engine

import (
	"context"
	"log/slog"
)

// Res is the contract every resource kind implements. Everything else a kind
// can do (automatic edges, grouping, refresh, collection) is an optional
// interface beside it, found by type assertion.
type Res interface {
	// Validate checks the parameters. It is called once after decoding and
	// before anything in the graph runs; it must not change the machine.
	Validate() error
	// Watch blocks until ctx ends. It calls ev.Running once its watches are
	// in place and ev.Dirty whenever what it manages may have drifted. It
	// never blocks on ev. A nil return before ctx ends is treated as an error.
	Watch(ctx context.Context, ev Events) error
	// CheckApply compares the real state with the desired one and, when apply
	// is true, makes them equal. changed reports that the state was (or, with
	// apply false, would have been) different.
	CheckApply(ctx context.Context, apply bool) (changed bool, err error)
	// Close releases what Init or Watch acquired. It is called once, after
	// Watch has returned.
	Close() error
}

// Events is how a resource's Watch talks to its vertex. Both methods are
// cheap and never block; bursts of Dirty collapse into one check.
type Events interface {
	Running()
	Dirty()
}

// Env is what the engine hands a resource before it runs.
type Env struct {
	Kind     string
	Name     string // the resource's name, without the "@@" export marker
	Hostname string
	Prefix   string       // the agent's working directory (--prefix)
	Logger   *slog.Logger // already carries res=kind[name]
	Noop     bool         // meta noop or --noop: CheckApply is always called with apply=false
	KV       KV           // the cluster's key-value store; nil without a cluster
}

// KV is the cluster's key-value store as kinds that keep values in it (kv)
// see it: each key is the kind's own, under a prefix the store chooses.
type KV interface {
	// Get returns key's value; ok is false when key is absent.
	Get(ctx context.Context, key string) (value string, ok bool, err error)
	// CompareAndSwap sets key to *value (deletes it when value is nil) if
	// it still holds *old (is still absent when old is nil), in one step;
	// swapped is false when another writer came first.
	CompareAndSwap(ctx context.Context, key string, old, value *string) (swapped bool, err error)
	// Watch blocks until ctx ends. It calls changed once the watch is in
	// place, and again after each change of key (and whenever a change may
	// have been missed). A non-nil error means the watch cannot go on.
	Watch(ctx context.Context, key string, changed func()) error
}

// ClusterUser is implemented by kinds that need the cluster (kv): a graph
// holding one makes the agent start or join etcd, as exports do.
type ClusterUser interface {
	NeedsCluster() bool
}

// Initer is implemented by kinds that need their environment (a logger, the
// hostname, shared connections) before Watch and CheckApply are called.
type Initer interface {
	Init(env Env) error
}

// Namer is implemented by kinds whose parameters default to the resource's
// name (a pkg's package, a svc's unit). It is called right after decoding,
// before Validate.
type Namer interface {
	SetName(name string)
}

// Refresher is implemented by kinds that act on a refresh: a notify edge
// whose parent changed something. Refresh is called after a successful
// CheckApply, once per burst of refreshes, and only when apply is true.
type Refresher interface {
	Refresh(ctx context.Context) (changed bool, err error)
}

// UID names something a resource manages, for automatic edges: a file's
// path, a unit file. Kind is the namespace ("path"), not the resource kind.
type UID struct {
	Kind string
	Key  string
}

// AutoEdge asks for an edge to the first resource found that owns one of
// UIDs (nearest first). With Before false the found resource comes first
// (a file after its parent directory); with Before true this resource comes
// first (a package before the files it ships).
type AutoEdge struct {
	UIDs   []UID
	Before bool
}

// UIDer is implemented by kinds that other resources can find by UID.
type UIDer interface {
	UIDs() []UID
}

// Excluder is implemented by kinds that manage a part of something whose
// whole another kind may manage (a line of a file, where a file resource
// may manage its content): a resource owning one of Excludes is a second
// owner, and the graph is refused.
type Excluder interface {
	Excludes() []UID
}

// AutoEdger is implemented by kinds that ask for automatic edges. It may
// take time (a package manager query) and must honour ctx; an error is a
// warning, never fatal to the run.
type AutoEdger interface {
	AutoEdges(ctx context.Context) ([]AutoEdge, error)
}

// AutoEdgeKinder is implemented by AutoEdgers whose automatic edges can
// only name UIDs of some kinds: the engine calls AutoEdges only when
// another resource of the graph owns a UID of one of them, so that a kind
// whose AutoEdges is slow (a package manager query) costs nothing in a
// graph that holds nothing it could order itself before.
type AutoEdgeKinder interface {
	AutoEdgeKinds() []string
}

// Grouper is implemented by kinds whose resources can be merged into one
// vertex that does their work at once (several packages in one transaction).
// A group's CheckApply reports each change under ForMember, and each
// failed member as a *MemberError, so that logs, reports and the run's
// error name the member.
type Grouper interface {
	// GroupKey: resources of the same kind with equal keys may be grouped;
	// an empty key: this one is never grouped.
	GroupKey() string
	// Group returns one resource that manages the receiver and all others.
	Group(others []Res) (Res, error)
}

// Collector is implemented by kinds whose exported resources other hosts
// can collect: Collect returns the resource as it should be managed on the
// collecting host, given the collect entry's pattern (a file is re-based into
// the pattern directory), or an error if it must be refused.
type Collector interface {
	Collect(pattern string) (Res, error)
}

// MemberHolder is a group that can check some of its members only: its
// CheckApply leaves out the members HeldBack(ctx) names and checks them on
// a later call. A group that is not waits, whole, for every parent of any
// of its members.
type MemberHolder interface {
	HoldsBackMembers()
}

// MemberError is the failure of one member of a group, as the group's
// CheckApply returns it (errors.Join of several): the other members were
// checked and applied all the same. The run's error and the log name the
// member (Res), not the group.
type MemberError struct {
	Res string // the member as users write it: kind[name]
	Err error
}

func (e *MemberError) Error() string { return e.Res + ": " + e.Err.Error() }

func (e *MemberError) Unwrap() error { return e.Err }

// memberErrors returns the member errors err holds (errors.Join'ed, or
// wrapped), in order; nil when it holds none.
func memberErrors(err error) []*MemberError {
	var out []*MemberError
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *MemberError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}
