package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/pgraph"
)

// Transform is one step of compiling a declaration into a runnable graph.
type Transform func(ctx context.Context, g *Graph) error

// AutoEdgeTimeout bounds how long one resource may take to list its
// automatic edges (a package manager query, say).
var AutoEdgeTimeout = 30 * time.Second

// Compile turns a declaration into the graph the engine runs: it adds the
// declared edges, rejects two resources that manage the same thing, adds
// automatic edges, groups what can be grouped and refuses cycles, naming
// the resources on them. It gives each vertex its identity (see identity),
// which decides what a reload keeps running.
func Compile(ctx context.Context, d *Decl, log *slog.Logger) (*Graph, error) {
	pg, err := declGraph(d)
	if err != nil {
		return nil, err
	}
	if err := checkCycles(pg); err != nil {
		return nil, err
	}
	g := &Graph{g: pg}
	if g.semas, err = semaCounts(d.Vertices); err != nil {
		return nil, err
	}
	for _, t := range []Transform{
		uniqueUIDs,
		autoEdges(log),
		autoGroup(log),
	} {
		if err := t(ctx, g); err != nil {
			return nil, err
		}
	}
	if err := checkCycles(pg); err != nil {
		return nil, err
	}
	order, err := pg.TopologicalSort()
	if err != nil {
		return nil, err
	}
	g.order = vertices(order)
	return g, nil
}

// declGraph adds the declared vertices and edges.
func declGraph(d *Decl) (*pgraph.Graph, error) {
	g := pgraph.New(d.Name)
	byRef := make(map[Ref]*Vertex, len(d.Vertices))
	var enc idEncoder
	for _, v := range d.Vertices {
		r := Ref{Kind: v.Kind, Name: v.Name}
		if prev, dup := byRef[r]; dup {
			return nil, fmt.Errorf("%s: duplicate resource %s (first declared at %s)", v.Source, r, prev.Source)
		}
		byRef[r] = v
		if err := v.Meta.Validate(); err != nil { // whatever front end built v
			return nil, fmt.Errorf("%s: %s: %w", v.Source, v, err)
		}
		id, err := enc.identity(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.Source, err)
		}
		v.id = id
		g.AddVertex(v)
	}
	for _, e := range d.Edges {
		from, okF := byRef[e.From]
		to, okT := byRef[e.To]
		if !okF || !okT {
			missing := e.From
			if okF {
				missing = e.To
			}
			return nil, fmt.Errorf("%s: edge %q names %s, which is not in the graph", e.Source, e.Name, missing)
		}
		g.AddEdge(from, to, &pgraph.Edge{Name: e.Name, Notify: e.Notify})
	}
	return g, nil
}

// semaCounts gives each semaphore name its count in the graph, refusing
// resources that give one name different counts.
func semaCounts(vs []*Vertex) (map[string]int, error) {
	counts := map[string]int{}
	first := map[string]*Vertex{}
	var errs []error
	for _, v := range vs {
		for _, spec := range v.Meta.Sema {
			name, c, err := ParseSema(spec)
			if err != nil { // Meta.Validate has refused it already
				return nil, fmt.Errorf("%s: %s: meta sema: %w", v.Source, v, err)
			}
			prev, ok := first[name]
			switch {
			case !ok:
				first[name], counts[name] = v, c
			case counts[name] != c:
				errs = append(errs, fmt.Errorf("%s: %s gives semaphore %s the count %d, but %s (%s) gives it %d: give a name one count in a graph",
					v.Source, v, name, c, prev, prev.Source, counts[name]))
			}
		}
	}
	return counts, errors.Join(errs...)
}

func checkCycles(g *pgraph.Graph) error {
	if _, err := g.TopologicalSort(); err != nil {
		var ce *pgraph.CycleError
		if errors.As(err, &ce) && len(ce.Cycles) > 0 && len(ce.Cycles[0]) > 0 {
			if v, ok := ce.Cycles[0][0].(*Vertex); ok && v.Source != "" {
				return fmt.Errorf("%s: the graph has a %w", v.Source, err)
			}
		}
		return fmt.Errorf("the graph has a %w", err)
	}
	return nil
}

// uniqueUIDs refuses two resources that manage the same thing (two file
// resources with one path).
func uniqueUIDs(_ context.Context, g *Graph) error {
	owner := map[UID]*Vertex{}
	var errs []error
	type pair struct{ a, b *Vertex }
	told := map[pair]bool{} // one error per two owners, however many UIDs they share
	for _, v := range g.Vertices() {
		u, ok := v.Res.(UIDer)
		if !ok {
			continue
		}
		for _, uid := range u.UIDs() {
			if prev, dup := owner[uid]; dup {
				if told[pair{v, prev}] {
					continue
				}
				told[pair{v, prev}] = true
				errs = append(errs, fmt.Errorf("%s: %s and %s (%s) both manage %s %s: only one resource may", v.Source, v, prev, prev.Source, uid.Kind, uid.Key))
				continue
			}
			owner[uid] = v
		}
	}
	for _, v := range g.Vertices() {
		x, ok := v.Res.(Excluder)
		if !ok {
			continue
		}
		for _, uid := range x.Excludes() {
			if o, dup := owner[uid]; dup && o != v {
				errs = append(errs, fmt.Errorf("%s: %s and %s (%s) both manage %s %s: only one resource may", v.Source, v, o, o.Source, uid.Kind, uid.Key))
			}
		}
	}
	return errors.Join(errs...)
}

// autoEdges adds the edges users forget: for each resource that asks, an
// edge to the nearest resource owning one of the UIDs it names. An error
// from one resource is a warning: that resource simply gets no automatic
// edges.
func autoEdges(log *slog.Logger) Transform {
	return func(ctx context.Context, g *Graph) error {
		owner := map[UID]*Vertex{}
		kinds := map[string]map[*Vertex]bool{} // the owners of UIDs, by UID kind
		for _, v := range g.Vertices() {
			if u, ok := v.Res.(UIDer); ok && v.Meta.AutoEdge {
				for _, uid := range u.UIDs() {
					owner[uid] = v
					if kinds[uid.Kind] == nil {
						kinds[uid.Kind] = map[*Vertex]bool{}
					}
					kinds[uid.Kind][v] = true
				}
			}
		}
		if len(owner) == 0 {
			return nil
		}
		// could says whether another vertex owns a UID of a kind v's
		// automatic edges can name.
		could := func(v *Vertex) bool {
			k, ok := v.Res.(AutoEdgeKinder)
			if !ok {
				return true
			}
			for _, kind := range k.AutoEdgeKinds() {
				for o := range kinds[kind] {
					if o != v {
						return true
					}
				}
			}
			return false
		}
		added := 0
		for _, v := range g.Vertices() {
			a, ok := v.Res.(AutoEdger)
			if !ok || !v.Meta.AutoEdge || !could(v) {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, AutoEdgeTimeout)
			edges, err := a.AutoEdges(actx)
			cancel()
			if err != nil {
				log.Warn("automatic edges skipped", "res", v.String(), "err", err)
			}
			for _, ae := range edges {
				for _, uid := range ae.UIDs {
					o, ok := owner[uid]
					if !ok || o == v {
						continue
					}
					from, to := o, v
					if ae.Before {
						from, to = v, o
					}
					if _, exists := g.Edge(from, to); !exists {
						g.g.AddEdge(from, to, &pgraph.Edge{Name: "autoedge"})
						added++
					}
					break // nearest match only
				}
			}
		}
		if added > 0 {
			log.Debug("automatic edges added", "count", added)
		}
		return nil
	}
}

// autoGroup merges resources of one kind that the graph does not order
// relative to each other (no path between them in either direction) into
// one vertex, so that their work is done at once. Within each set of
// groupable resources (kind, group key and meta alike), a pass starts a group
// with the first resource left and adds every later one that has no path to
// or from the group as it stands; the group is then contracted and the next
// pass takes the resources left out. Reachability is always that of the
// graph with the groups made so far contracted, so no grouping can create a
// cycle, not even one through another group. A pass costs O(V+E) (marking
// what the group reaches and what reaches it), so grouping costs O(V+E) per
// group made: linear when a kind forms few groups, as files in directories
// (two: the directories and the files) or unordered packages (one).
func autoGroup(log *slog.Logger) Transform {
	return func(_ context.Context, g *Graph) error {
		type key struct {
			kind  string
			group string
		}
		sets := map[key][]*Vertex{}
		var order []key
		for _, v := range g.Vertices() {
			gr, ok := v.Res.(Grouper)
			if !ok || !v.Meta.AutoGroup {
				continue
			}
			gk := gr.GroupKey()
			if gk == "" {
				continue
			}
			k := key{v.Kind, gk + "\x00" + metaKey(v.Meta)}
			if _, ok := sets[k]; !ok {
				order = append(order, k)
			}
			sets[k] = append(sets[k], v)
		}
		for _, k := range order {
			for left := sets[k]; len(left) > 1; {
				var members []*Vertex
				members, left = g.groupPass(left)
				if len(members) < 2 {
					continue
				}
				if err := g.group(members, log); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// groupPass picks, from candidates, the first and every later one with no
// path to or from those picked before it; it returns the rest apart. Edges
// from the group keep the member they came from (pgraph.Edge.Tails), so a
// failing member holds back only its own dependents (node.waitsOnLocked).
func (g *Graph) groupPass(candidates []*Vertex) (members, rest []*Vertex) {
	below := map[pgraph.Vertex]bool{} // reachable from a member
	above := map[pgraph.Vertex]bool{} // reaching a member
	var stack []pgraph.Vertex
	mark := func(from pgraph.Vertex, seen map[pgraph.Vertex]bool, next func(pgraph.Vertex) []pgraph.Vertex) {
		stack = append(stack[:0], next(from)...)
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[x] {
				continue
			}
			seen[x] = true
			stack = append(stack, next(x)...)
		}
	}
	for _, v := range candidates {
		if below[v] || above[v] {
			rest = append(rest, v)
			continue
		}
		members = append(members, v)
		mark(v, below, g.g.Children)
		mark(v, above, g.g.Parents)
	}
	return members, rest
}

// group merges members into one vertex acting for all of them.
func (g *Graph) group(members []*Vertex, log *slog.Logger) error {
	lead := members[0]
	others := make([]Res, 0, len(members)-1)
	for _, m := range members[1:] {
		others = append(others, m.Res)
	}
	res, err := lead.Res.(Grouper).Group(others)
	if err != nil {
		log.Warn("automatic grouping skipped", "res", lead.String(), "err", err)
		return nil
	}
	gv := &Vertex{
		Kind: lead.Kind, Name: lead.Name, Meta: lead.Meta, Res: res,
		Source: lead.Source, Grouped: members[1:],
	}
	ids := make([]string, len(members))
	pvs := make([]pgraph.Vertex, len(members))
	for i, m := range members {
		ids[i] = m.id
		pvs[i] = m
		gv.Exported = gv.Exported || m.Exported
	}
	sort.Strings(ids)
	gv.id = strings.Join(ids, "+")
	// groupPass picked members of which none reaches another: contracting
	// them makes no cycle (and Compile checks the whole graph after).
	if err := g.g.ContractAntichain(pvs, gv); err != nil {
		return fmt.Errorf("group %s: %w", gv, err)
	}
	log.Info("grouped", "res", gv.String(), "count", len(members))
	return nil
}

// metaKey keeps resources with different meta parameters apart: a group
// runs with one set of them.
func metaKey(m Meta) string {
	return fmt.Sprintf("%t|%d|%d|%d|%v|%d|%v|%d|%t", m.Noop, m.Retry, m.Delay, m.Poll, m.Limit, m.Burst, m.Sema, m.Timeout, m.Sensitive)
}
