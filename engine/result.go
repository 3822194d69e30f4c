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
	// Held: the resource is not in its desired state and waits on a
	// failed dependency (it never ran, or is owed a check, since); HeldBy
	// names the failed resources it waits on, the nearest failed
	// ancestors, sorted. A member of a group may be held while its group
	// ran for the others.
	Held   bool     `json:"held,omitempty"`
	HeldBy []string `json:"held_by,omitempty"`
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
			r.MembersChanged = len(n.pendingMembers)
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
// heldBy is what heldByLocked found for n.
func (n *node) memberReportsLocked(heldBy map[string][]string) []Report {
	g := n.reportLocked()
	if len(n.v.Grouped) == 0 {
		if by := heldBy[g.Res]; len(by) > 0 {
			g.Held, g.HeldBy = true, by
		}
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
			// a change that names no member (the kind did not say whose)
			// is the first member's, the vertex that acted for the group
			if c.Res == ref || c.Res == "" && m == n.v {
				r.Properties = append(r.Properties, c)
			}
		}
		if err, ok := failed[ref]; ok {
			r.Failed, r.Error, r.Failures = true, err.Error(), 1
		} else if g.Failed && len(failed) == 0 {
			r.Failed, r.Error, r.Failures = true, g.Error, g.Failures // the group as a whole
		}
		if by := heldBy[ref]; len(by) > 0 {
			r.Held, r.HeldBy = true, by
		}
		if g.Noop {
			r.Pending = n.pendingMembers[ref] || len(r.Properties) > 0
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
	held := e.heldByLocked()
	for _, n := range e.order {
		out = append(out, n.memberReportsLocked(held[n])...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Res < out[j].Res })
	return out
}

// heldByLocked returns, for each vertex that holds resources held back by
// a failed dependency, what n.heldByLocked tells of them.
func (e *Engine) heldByLocked() map[*node]map[string][]string {
	known := map[*node]map[string][]string{}
	for _, n := range e.order { // topological: parents first
		if by := n.heldByLocked(known); by != nil {
			known[n] = by
		}
	}
	return known
}

// refs names the resources n acts for: n, or a group's members.
func (n *node) refs() []string {
	out := []string{Ref{Kind: n.v.Kind, Name: n.v.Name}.String()}
	for _, m := range n.v.Grouped {
		out = append(out, Ref{Kind: m.Kind, Name: m.Name}.String())
	}
	return out
}

// memberFailedLocked tells whether n's report says m (n, or a member of
// the group n) failed.
func (n *node) memberFailedLocked(m string) bool {
	return n.st == stateFailed && n.lastErr != nil && (len(n.failedMembers) == 0 || n.failedMembers[m])
}

// heldCandidatesLocked returns the resources of n (n, or a group's
// members) that are not in their desired state and did not fail
// themselves: those a failed dependency may hold back.
func (n *node) heldCandidatesLocked() map[string]bool {
	switch {
	case n.busy:
		return nil
	case n.held != nil: // a group's latest check left these out
		out := make(map[string]bool, len(n.held))
		for m := range n.held {
			if !n.memberFailedLocked(m) {
				out[m] = true
			}
		}
		return out
	case n.st == stateFailed, n.st == stateOK && !n.dirty && !n.refresh:
		return nil
	}
	out := map[string]bool{}
	for _, m := range n.refs() {
		out[m] = true
	}
	return out
}

// heldByLocked returns, for each resource of n (n, or each member of a
// group) that is held back, the failed resources it waits on: the nearest
// failed ancestors, by name, sorted. It follows the engine's own rules of
// who waits on whom (waitsOnLocked, waitingHeadsLocked); known is what it
// returned for the vertices before n in topological order.
func (n *node) heldByLocked(known map[*node]map[string][]string) map[string][]string {
	cands := n.heldCandidatesLocked()
	if len(cands) == 0 {
		return nil
	}
	by := map[string]map[string]bool{}
	for _, p := range n.parents {
		if !n.waitsOnLocked(p) {
			continue
		}
		heads := n.waitingHeadsLocked(p)
		if len(heads) == 0 {
			heads = n.refs()
		}
		var tailsOf map[string][]string // head → the members of p it depends on
		for _, pr := range n.pairs[p] {
			if tailsOf == nil {
				tailsOf = map[string][]string{}
			}
			tailsOf[pr[1]] = append(tailsOf[pr[1]], pr[0])
		}
		var behindAll []string // behind n.tails[p], worked out once
		doneAll := false
		for _, h := range heads {
			if !cands[h] {
				continue
			}
			var srcs []string
			if tails := tailsOf[h]; len(tails) > 0 {
				srcs = p.failedBehindLocked(tails, known)
			} else {
				if !doneAll {
					behindAll, doneAll = p.failedBehindLocked(n.tails[p], known), true
				}
				srcs = behindAll
			}
			for _, s := range srcs {
				if by[h] == nil {
					by[h] = map[string]bool{}
				}
				by[h][s] = true
			}
		}
	}
	if len(by) == 0 {
		return nil
	}
	if _, holder := n.v.Res.(MemberHolder); !holder && len(n.v.Grouped) > 0 {
		// a group that cannot leave members out waits whole: what holds
		// back one of its members holds back all
		all := map[string]bool{}
		for _, srcs := range by {
			for s := range srcs {
				all[s] = true
			}
		}
		for m := range cands {
			by[m] = all
		}
	}
	out := make(map[string][]string, len(by))
	for m, srcs := range by {
		list := make([]string, 0, len(srcs))
		for s := range srcs {
			list = append(list, s)
		}
		sort.Strings(list)
		out[m] = list
	}
	return out
}

// failedBehindLocked returns the failed resources that hold back what
// depends on tails, members of n (none: all of n): those of them that
// failed, and for the others what holds them back (known[n]).
func (n *node) failedBehindLocked(tails []string, known map[*node]map[string][]string) []string {
	if len(tails) == 0 {
		tails = n.refs()
	}
	var out []string
	for _, t := range tails {
		if n.memberFailedLocked(t) {
			out = append(out, t)
		} else {
			out = append(out, known[n][t]...)
		}
	}
	return out
}

// heldCountLocked counts the resources heldByLocked finds held back,
// without naming what holds them: State, which a host's status asks for
// every 200 ms, needs only the count, and naming them took 230 ms and
// 109 MB for 100,000 vertices held by one failed root.
func (e *Engine) heldCountLocked() int {
	count := 0
	for _, n := range e.order { // topological: parents first, marked before n
		n.heldAll, n.heldSome = false, nil
		count += n.markHeldLocked()
	}
	return count
}

// markHeldLocked marks, as heldByLocked would find them, the resources of
// n held back (n.heldAll, n.heldSome), from its parents' marks, and
// returns how many they are.
func (n *node) markHeldLocked() int {
	var some map[string]bool // the candidates among a group's members; nil: all of n
	switch {
	case n.busy:
		return 0
	case n.held != nil: // as heldCandidatesLocked
		some = n.held
	case n.st == stateFailed, n.st == stateOK && !n.dirty && !n.refresh:
		return 0
	}
	cand := func(m string) bool { return some == nil || some[m] && !n.memberFailedLocked(m) }
	_, holder := n.v.Res.(MemberHolder)
	whole := len(n.v.Grouped) == 0 || !holder // held back at all: held back whole
	mark := func(m string) {
		if n.heldSome == nil {
			n.heldSome = map[string]bool{}
		}
		n.heldSome[m] = true
	}
	for _, p := range n.parents {
		if !n.waitsOnLocked(p) {
			continue
		}
		heads := n.waitingHeadsLocked(p)
		if len(heads) == 0 {
			if !p.behindLocked(n.tails[p]) {
				continue
			}
			if whole && some == nil {
				n.heldAll = true
				return 1 + len(n.v.Grouped)
			}
			for _, m := range n.refs() {
				if cand(m) {
					mark(m)
				}
			}
			continue
		}
		var tailsOf map[string][]string // head → the members of p it depends on
		for _, pr := range n.pairs[p] {
			if tailsOf == nil {
				tailsOf = map[string][]string{}
			}
			tailsOf[pr[1]] = append(tailsOf[pr[1]], pr[0])
		}
		for _, h := range heads {
			if !cand(h) || n.heldSome[h] {
				continue
			}
			tails := tailsOf[h]
			if len(tails) == 0 {
				tails = n.tails[p]
			}
			if p.behindLocked(tails) {
				mark(h)
			}
		}
	}
	switch {
	case len(n.heldSome) == 0:
		return 0
	case whole && some == nil:
		n.heldAll, n.heldSome = true, nil
		return 1 + len(n.v.Grouped)
	case whole:
		for m := range some {
			if cand(m) {
				mark(m)
			}
		}
	}
	return len(n.heldSome)
}

// behindLocked tells whether what depends on tails, members of n (none:
// all of n), is held back by a failed resource: one of them failed, or is
// held back (markHeldLocked's marks), as failedBehindLocked finds some.
func (n *node) behindLocked(tails []string) bool {
	if len(tails) == 0 {
		return n.st == stateFailed && n.lastErr != nil || n.heldAll || len(n.heldSome) > 0
	}
	for _, t := range tails {
		if n.memberFailedLocked(t) || n.heldAll || n.heldSome[t] {
			return true
		}
	}
	return false
}
