package engine

import (
	"fmt"
	"sort"
	"strings"
)

// Vertex is one resource (or one group of resources) in the graph the engine
// runs. It implements pgraph.Vertex.
type Vertex struct {
	Kind     string
	Name     string // without the "@@" export marker
	Exported bool   // the name began with "@@": published for other hosts
	Meta     Meta
	Res      Res
	// Source is where the resource was declared ("graph.yaml:12:5"), for messages.
	Source string
	// Grouped holds the vertices merged into this one by automatic grouping;
	// Res then acts for all of them.
	Grouped []*Vertex

	// id is the vertex's identity, set by Compile: a reload keeps a running
	// vertex whose id is unchanged. See identity.
	id string
}

// String is the resource's reference as users write it: kind[name], or
// kind[autogroup:(a,b,c)] for a group; a group of more than maxNamesShown
// lists that many names and how many more it holds (a directory of 10,000
// files is one group: its every log line would carry them all).
func (v *Vertex) String() string {
	if len(v.Grouped) == 0 {
		return fmt.Sprintf("%s[%s]", v.Kind, v.Name)
	}
	names := v.names()
	if len(names) > maxNamesShown {
		names = append(names[:maxNamesShown:maxNamesShown], fmt.Sprintf("...+%d more", len(names)-maxNamesShown))
	}
	return fmt.Sprintf("%s[autogroup:(%s)]", v.Kind, strings.Join(names, ","))
}

// maxNamesShown is how many members a group's String names.
const maxNamesShown = 5

// Members lists the names in a group, for the DOT output.
func (v *Vertex) Members() []string {
	if len(v.Grouped) == 0 {
		return nil
	}
	m := v.names()
	for i := range m {
		m[i] = fmt.Sprintf("%s[%s]", v.Kind, m[i])
	}
	return m
}

func (v *Vertex) names() []string {
	names := []string{v.Name}
	for _, g := range v.Grouped {
		names = append(names, g.Name)
	}
	sort.Strings(names)
	return names
}
