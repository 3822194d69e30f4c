package engine

import (
	"sort"
	"time"
)

// Report is what one resource did during a run.
type Report struct {
	Res  string `json:"res"`
	Kind string `json:"kind"`
	// Members counts the resources a group acts for (0: not a group);
	// MembersChanged, those of them the run changed (in noop: that its
	// latest check would change); MembersFailed, those that failed.
	Members        int           `json:"members,omitempty"`
	MembersChanged int           `json:"members_changed,omitempty"`
	MembersFailed  int           `json:"members_failed,omitempty"`
	Changed        bool          `json:"changed"`
	Failed         bool          `json:"failed"`
	Error          string        `json:"error,omitempty"`
	Checks         int           `json:"checks"`
	Changes        int           `json:"changes"`
	Failures       int           `json:"failures"`
	Duration       time.Duration `json:"duration_ns"`
	Removed        bool          `json:"removed,omitempty"` // left the graph during the run
	// Noop: the resource ran without applying (--noop or meta noop);
	// Properties are then what it would change, as its latest check found.
	Noop bool `json:"noop,omitempty"`
	// Pending: noop, and the latest check found something to change.
	Pending bool `json:"pending,omitempty"`
	// Properties lists, property by property, what the run changed (the
	// latest MaxChangesKept), or in noop what it would change. Values of
	// sensitive resources are masked.
	Properties []Change `json:"properties,omitempty"`
	// NotListed counts the changes left out of Properties.
	NotListed int `json:"not_listed,omitempty"`
	// Group names the vertex that acted for this resource when it was
	// grouped with others (file[autogroup:(a,b,...)]); its Checks,
	// Duration and Noop are the group's.
	Group string `json:"group,omitempty"`
}

func (n *node) reportLocked() Report {
	r := Report{
		Res: n.v.String(), Kind: n.v.Kind, Changed: n.stats.Changes > 0,
		Checks: n.stats.Checks, Changes: n.stats.Changes, Failures: n.stats.Failures,
		Duration: n.stats.Duration,
	}
	if len(n.v.Grouped) > 0 {
		r.Members, r.MembersChanged = 1+len(n.v.Grouped), len(n.changedMembers)
		if n.noop {
			r.MembersChanged = n.pendingMembers
		}
	}
	if n.st == stateFailed && n.lastErr != nil {
		r.Failed, r.Error = true, n.lastErr.Error()
		if r.Members > 0 {
			r.MembersFailed = len(memberErrors(n.lastErr))
		}
	}
	if n.noop {
		r.Noop = true
		r.Properties = append([]Change(nil), n.pending...)
		r.NotListed = n.pendingDropped
		for _, p := range n.wouldRefreshBy {
			r.Properties = append(r.Properties, Change{Property: "refresh", Why: "notified by " + p + ", which would change"})
		}
		r.Pending = n.pendingNow || len(n.wouldRefreshBy) > 0
		return r
	}
	r.Properties = append([]Change(nil), n.changes...)
	r.NotListed = n.dropped
	return r
}

// memberReportsLocked is n's report, or for a group one report per member,
// so that a run's report lists every resource of the graph by its own name
// with its own changes and failure.
func (n *node) memberReportsLocked() []Report {
	g := n.reportLocked()
	if len(n.v.Grouped) == 0 {
		return []Report{g}
	}
	failed := map[string]error{}
	for _, me := range memberErrors(n.lastErr) {
		failed[me.Res] = me.Err
	}
	members := append([]*Vertex{n.v}, n.v.Grouped...)
	out := make([]Report, 0, len(members))
	for _, m := range members {
		ref := Ref{Kind: m.Kind, Name: m.Name}.String()
		r := Report{
			Res: ref, Kind: m.Kind, Group: g.Res, Noop: g.Noop,
			Checks: g.Checks, Duration: g.Duration, Removed: g.Removed,
		}
		for _, c := range g.Properties {
			if c.Res == ref {
				r.Properties = append(r.Properties, c)
			}
		}
		if err, ok := failed[ref]; ok {
			r.Failed, r.Error, r.Failures = true, err.Error(), 1
		} else if g.Failed && len(failed) == 0 {
			r.Failed, r.Error, r.Failures = true, g.Error, g.Failures // the group as a whole
		}
		if g.Noop {
			r.Pending = len(r.Properties) > 0
		} else {
			r.Changed = n.changedMembers[ref] || len(r.Properties) > 0
			if r.Changed {
				r.Changes = 1
			}
		}
		out = append(out, r)
	}
	return out
}

// Count is how many resources r counts for in a run's tally of what
// changed, would change or failed (with what, r.Changed, r.Pending or
// r.Failed): 1, or for a group the members that did (1 at least).
func (r Report) Count(what bool, members int) int {
	switch {
	case !what:
		return 0
	case r.Members > 0:
		return max(1, members)
	default:
		return 1
	}
}

// Reports lists what every resource did, sorted by name: those in the graph
// and those removed by a reload. Call it after Run has returned.
func (e *Engine) Reports() []Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]Report(nil), e.gone...)
	for _, n := range e.order {
		out = append(out, n.memberReportsLocked()...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Res < out[j].Res })
	return out
}
