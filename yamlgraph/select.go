package yamlgraph

import (
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/facts"
	"go.yaml.in/yaml/v3"
)

// Selection is what parsing a graph for a host (ParseWith) did.
type Selection struct {
	Host      string // the host; "" when parsed for none (every resource kept)
	Templates int    // values that held a template, rendered
	Left      []LeftOut
	Dropped   []DroppedEdge
}

// LeftOut is a resource whose meta hosts or labels do not match the host.
type LeftOut struct {
	Res    engine.Ref // its name rendered for the host, or as written when that fails
	Source string     // file:line:col
	Why    string
}

// DroppedEdge is an edge to or from a resource not on the host.
type DroppedEdge struct {
	Name     string
	From, To engine.Ref
	Source   string // file:line:col
	Why      string
}

// selected is a resource item's host selection, as read from its meta.
type selected struct {
	hosts  []string    // globs; nil: any host
	labels [][2]string // key, value pairs, in file order
}

// selectItem reads the host selection (meta hosts and labels) of a
// resource item and takes it out of the item's meta: engine.Meta knows
// nothing of hosts. It reports whether the resource is on this host (in
// check mode, every resource is) and whether it had a selection.
func (r *renderer) selectItem(it *yaml.Node, kind, raw, res string) (on, has bool) {
	mi := -1
	for j := 0; j+1 < len(it.Content); j += 2 {
		if deref(it.Content[j]).Value == "meta" {
			mi = j + 1
		}
	}
	if mi < 0 {
		return true, false
	}
	meta := deref(it.Content[mi])
	if meta.Kind != yaml.MappingNode {
		return true, false
	}
	rest := *meta // a copy: an aliased meta may be shared by other resources
	rest.Content = nil
	var hostsN, labelsN *yaml.Node
	metaFields := fieldsOf(reflect.TypeFor[engine.Meta]())
	typo := false
	for j := 0; j+1 < len(meta.Content); j += 2 {
		k, v := deref(meta.Content[j]), meta.Content[j+1]
		switch k.Value {
		case "hosts", "labels":
			dst := &hostsN
			if k.Value == "labels" {
				dst = &labelsN
			}
			if *dst != nil {
				r.p.errorf(k, res, "meta: field %q is given twice: give it once", k.Value)
				continue
			}
			*dst = deref(v)
		default:
			// engine.Meta's unknown-field message cannot know of these two.
			if _, ok := metaFields.index[k.Value]; !ok {
				if hint := suggest(k.Value, []string{"hosts", "labels"}); hint != "" {
					r.p.errorf(k, res, "meta: unknown field %q%s; valid fields: %s", short(k.Value), hint, strings.Join(append(slices.Clone(metaFields.names), "hosts", "labels"), ", "))
					typo = true
					continue
				}
			}
			rest.Content = append(rest.Content, meta.Content[j], v)
		}
	}
	if hostsN == nil && labelsN == nil && !typo {
		return true, false
	}
	it.Content[mi] = &rest
	if hostsN == nil && labelsN == nil {
		return true, false
	}
	var s selected
	ok := true
	if hostsN != nil {
		s.hosts, ok = r.globs(hostsN, res)
	}
	if labelsN != nil {
		var okL bool
		s.labels, okL = r.labels(labelsN, res)
		ok = ok && okL
	}
	if !ok || r.host == nil {
		return true, true
	}
	why := s.match(r.host)
	if why == "" {
		return true, true
	}
	name := strings.TrimPrefix(raw, "@@")
	r.off[engine.Ref{Kind: kind, Name: name}] = true
	if strings.Contains(name, "{{") {
		if out, e := r.execute(name); e == nil {
			name = out
			r.off[engine.Ref{Kind: kind, Name: name}] = true
		}
	}
	r.sel.Left = append(r.sel.Left, LeftOut{Res: engine.Ref{Kind: kind, Name: name}, Source: r.p.pos(it), Why: why})
	return false, true
}

// globs reads meta hosts: a list of path.Match globs of hostnames.
func (r *renderer) globs(n *yaml.Node, res string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		r.p.errorf(n, res, "meta hosts: want a list of hostname globs, e.g. hosts: [web-*, db1], found %s", describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		r.p.errorf(n, res, "meta hosts: an empty list puts the resource on no host: list hostname globs, or remove hosts to put it on every host")
		return nil, false
	}
	globs := []string{}
	ok := true
	for _, g := range n.Content {
		g = deref(g)
		switch {
		case g.Kind != yaml.ScalarNode || isNull(g):
			r.p.errorf(g, res, "meta hosts: want a hostname glob, found %s", describe(g))
			ok = false
			continue
		case strings.Contains(g.Value, "{{"):
			r.p.errorf(g, res, "meta hosts: %q: host selection takes no templates: write the globs out", short(g.Value))
			ok = false
			continue
		}
		if _, err := path.Match(g.Value, ""); err != nil {
			r.p.errorf(g, res, "meta hosts: %q is not a valid glob (%v): * matches any run of characters, ? one, [a-z] one of a set, \\ escapes", short(g.Value), err)
			ok = false
			continue
		}
		globs = append(globs, g.Value)
	}
	return globs, ok
}

// labels reads meta labels: a mapping of label keys to values.
func (r *renderer) labels(n *yaml.Node, res string) ([][2]string, bool) {
	if n.Kind != yaml.MappingNode {
		r.p.errorf(n, res, "meta labels: want a mapping of label keys to values, e.g. labels: {role: web}, found %s", describe(n))
		return nil, false
	}
	var out [][2]string
	seen := map[string]bool{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if !r.p.key(k, res, "meta labels") {
			ok = false
			continue
		}
		if v.Kind != yaml.ScalarNode || isNull(v) {
			r.p.errorf(v, res, "meta labels: %s: want a value, found %s", short(k.Value), describe(v))
			ok = false
			continue
		}
		if strings.Contains(v.Value, "{{") {
			r.p.errorf(v, res, "meta labels: %s: host selection takes no templates: write the value out", short(k.Value))
			ok = false
			continue
		}
		if _, _, err := facts.ParseLabel(k.Value + "=" + v.Value); err != nil {
			r.p.errorf(k, res, "meta labels: %v", err)
			ok = false
			continue
		}
		if seen[k.Value] {
			r.p.errorf(k, res, "meta labels: %s is given twice: give it once", short(k.Value))
			ok = false
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]string{k.Value, v.Value})
	}
	return out, ok
}

// match says why s does not select host h, or "" when it does: one of the
// globs matches its hostname, and it has every label with its value.
func (s selected) match(h *facts.Data) string {
	if s.hosts != nil {
		on := false
		for _, g := range s.hosts {
			if m, _ := path.Match(g, h.Hostname); m {
				on = true
				break
			}
		}
		if !on {
			return fmt.Sprintf("meta hosts [%s] do not match host %s", strings.Join(s.hosts, ", "), h.Hostname)
		}
	}
	for _, kv := range s.labels {
		got, has := h.Labels[kv[0]]
		switch {
		case !has:
			return fmt.Sprintf("meta labels want %s=%s; host %s has no label %s", kv[0], kv[1], h.Hostname, kv[0])
		case got != kv[1]:
			return fmt.Sprintf("meta labels want %s=%s; host %s has %s=%s", kv[0], kv[1], h.Hostname, kv[0], got)
		}
	}
	return ""
}

// edges renders the edges and takes out those to or from a resource not
// on this host. An edge's side is checked as written first (its names may
// not render on this host: the label they use is another host's), then as
// rendered.
func (r *renderer) edges(n *yaml.Node) {
	kept := n.Content[:0:0]
	for _, e := range n.Content {
		ed := deref(e)
		if ed.Kind != yaml.MappingNode {
			kept = append(kept, e)
			continue
		}
		if r.dropEdge(ed) {
			continue
		}
		r.value(ed, "", "kind", "res")
		if r.dropEdge(ed) {
			continue
		}
		kept = append(kept, e)
	}
	n.Content = kept
}

// dropEdge records and reports an edge one of whose sides names a
// resource left out, and none on this host.
func (r *renderer) dropEdge(ed *yaml.Node) bool {
	if len(r.off) == 0 {
		return false
	}
	var name string
	var sides [2]engine.Ref
	for i := 0; i+1 < len(ed.Content); i += 2 {
		k, v := deref(ed.Content[i]), deref(ed.Content[i+1])
		switch k.Value {
		case "name":
			name = v.Value
		case "from":
			sides[0] = edgeRef(v)
		case "to":
			sides[1] = edgeRef(v)
		}
	}
	for i, s := range sides {
		if !r.off[s] || r.on[s] {
			continue
		}
		side := [2]string{"from", "to"}[i]
		r.sel.Dropped = append(r.sel.Dropped, DroppedEdge{Name: name, From: sides[0], To: sides[1], Source: r.p.pos(ed),
			Why: fmt.Sprintf("%s %s, which is not on this host", side, s)})
		return true
	}
	return false
}

// edgeRef reads an edge's side as written: {kind: KIND, name: NAME}.
func edgeRef(n *yaml.Node) engine.Ref {
	var ref engine.Ref
	if n.Kind != yaml.MappingNode {
		return ref
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		switch k.Value {
		case "kind":
			ref.Kind = v.Value
		case "res":
			if ref.Kind == "" {
				ref.Kind = v.Value
			}
		case "name":
			ref.Name = strings.TrimPrefix(v.Value, "@@")
		}
	}
	return ref
}
