package pgraph

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// String lists the vertices and edges sorted by label, one per line, for
// golden tests:
//
//	Vertices(3):
//	  a
//	  b
//	  c
//	Edges(2):
//	  a -> b
//	  a -> c (notify)
func (g *Graph) String() string {
	vs := make([]string, 0, len(g.nodes))
	es := make([]string, 0, len(g.edges))
	for _, n := range g.order {
		if n.dead {
			continue
		}
		vs = append(vs, n.v.String())
		for _, e := range n.out {
			if e.dead {
				continue
			}
			line := n.v.String() + " -> " + e.to.v.String()
			if e.e.Notify {
				line += " (notify)"
			}
			es = append(es, line)
		}
	}
	slices.Sort(vs)
	slices.Sort(es)
	var b strings.Builder
	fmt.Fprintf(&b, "Vertices(%d):\n", len(vs))
	for _, s := range vs {
		b.WriteString("  " + s + "\n")
	}
	fmt.Fprintf(&b, "Edges(%d):\n", len(es))
	for _, s := range es {
		b.WriteString("  " + s + "\n")
	}
	return b.String()
}

// group is a vertex that stands for several others, as made by grouping.
type group interface{ Members() []string }

// WriteDOT writes g in Graphviz DOT, vertices and edges in insertion order.
// A vertex with a Members() []string method is drawn as one record node
// listing its members; notify edges are bold and say so in their label.
func (g *Graph) WriteDOT(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", quote(g.Name))
	id := make(map[*node]int, len(g.nodes))
	for _, n := range g.order {
		if n.dead {
			continue
		}
		id[n] = len(id)
		if grp, ok := n.v.(group); ok {
			fields := []string{recordField(n.v.String())}
			for _, m := range grp.Members() {
				fields = append(fields, recordField(m))
			}
			label := "{" + strings.Join(fields, "|") + "}"
			fmt.Fprintf(&b, "\tv%d [shape=record, label=%s];\n", id[n], quote(label))
			continue
		}
		fmt.Fprintf(&b, "\tv%d [label=%s];\n", id[n], quote(escLabel(n.v.String())))
	}
	for _, n := range g.order {
		for _, e := range n.out {
			if e.dead {
				continue
			}
			label, style := e.e.Name, ""
			if e.e.Notify {
				label = strings.TrimSpace(label + " (notify)")
				style = ", style=bold"
			}
			fmt.Fprintf(&b, "\tv%d -> v%d [label=%s%s];\n", id[n], id[e.to], quote(escLabel(label)), style)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// escLabel makes s a literal label: a backslash would otherwise start one of
// Graphviz's escapes (\n, \l, \N...), and line breaks become centred ones.
var escLabel = strings.NewReplacer(`\`, `\\`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace

// recordField makes s a literal field of a record label, where braces, bars,
// angle brackets and spaces are syntax.
var recordField = strings.NewReplacer(`\`, `\\`, "{", `\{`, "}", `\}`, "|", `\|`, "<", `\<`, ">", `\>`, " ", `\ `,
	"\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace

// quote makes a DOT double-quoted string; inside it only \" is an escape for
// the parser, the other backslashes reach the label as written.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
