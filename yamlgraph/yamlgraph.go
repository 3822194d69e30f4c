// Package yamlgraph reads the YAML graph format (resources by kind, edges,
// collect entries) into an engine declaration, with errors that name the
// file, line, column and resource.
package yamlgraph

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/mgmtconfig/mgmt/engine"
	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what ParseFile reads: a graph file is text a person wrote.
const MaxFileSize = 32 << 20

// Graph is a parsed graph file.
type Graph struct {
	File    string
	Comment string
	engine.Decl
}

// Error is one problem in a graph file, at a position.
type Error struct {
	File   string
	Line   int
	Column int
	Res    string // kind[name], when the problem belongs to one resource
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Res != "" {
		b.WriteString(e.Res + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// ParseFile reads and parses a graph file.
func ParseFile(path string) (*Graph, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read graph: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read graph %s: %w", path, err)
	}
	if n > MaxFileSize {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("file is larger than %d MiB: not a graph a person wrote", MaxFileSize>>20)}}
	}
	return Parse(path, buf.Bytes())
}

type parser struct {
	file string
	errs Errors
}

func (p *parser) errorf(n *yaml.Node, res, format string, args ...any) {
	e := &Error{File: p.file, Res: res, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	p.errs = append(p.errs, e)
}

func (p *parser) pos(n *yaml.Node) string {
	return fmt.Sprintf("%s:%d:%d", p.file, n.Line, n.Column)
}

// Parse parses a graph from data; file names it in messages. Nothing is
// returned unless the whole graph is valid: every resource decoded strictly
// and validated, every edge resolved.
func Parse(file string, data []byte) (*Graph, error) {
	p := &parser{file: file}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Errors{{File: file, Msg: "file is empty: want a mapping with a resources: section"}}
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, Errors{{File: file, Msg: "file holds binary data (a NUL byte): want YAML text"}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{syntaxError(file, err)}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, Errors{{File: file, Msg: "no YAML document found: want a mapping with a resources: section"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "", "the top level is %s: want a mapping with keys graph, comment, resources, edges, collect", describe(root))
		return nil, p.errs
	}
	g := &Graph{File: file}
	top := []string{"collect", "comment", "edges", "graph", "resources"}
	var edges, collect *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			p.errorf(k, "", "key %q is given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		switch k.Value {
		case "graph":
			p.scalar(v, "", "graph", &g.Name)
		case "comment":
			p.scalar(v, "", "comment", &g.Comment)
		case "resources":
			p.resources(g, v)
		case "edges":
			edges = v
		case "collect":
			collect = v
		default:
			p.errorf(k, "", "unknown top-level key %q%s; valid keys: %s", k.Value, suggest(k.Value, top), strings.Join(top, ", "))
		}
	}
	if !seen["resources"] && len(p.errs) == 0 {
		p.errorf(root, "", "no resources: section: a graph needs at least one resource")
	}
	if edges != nil {
		p.edges(g, edges)
	}
	if collect != nil {
		p.collect(g, collect)
	}
	if len(p.errs) > 0 {
		sortErrors(p.errs)
		return nil, p.errs
	}
	return g, nil
}

func (p *parser) scalar(n *yaml.Node, res, what string, dst *string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" && what == "name" {
		p.errorf(n, res, "%s: want a string, found %s", what, describe(n))
		return false
	}
	*dst = n.Value
	return true
}

func (p *parser) resources(g *Graph, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "", "resources: want a mapping of kind to list of resources, found %s", describe(n))
		return
	}
	type first struct{ line int }
	byRef := map[engine.Ref]first{}
	kinds := engine.Kinds()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, list := n.Content[i], n.Content[i+1]
		kind := k.Value
		if _, ok := engine.NewRes(kind); !ok {
			p.errorf(k, "", "unknown resource kind %q%s; known kinds: %s", kind, suggest(kind, kinds), strings.Join(kinds, ", "))
			continue
		}
		if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
			continue
		}
		if list.Kind != yaml.SequenceNode {
			p.errorf(list, "", "resources: %s: want a list of resources, found %s", kind, describe(list))
			continue
		}
		for _, item := range list.Content {
			v := p.resource(kind, item)
			if v == nil {
				continue
			}
			ref := engine.Ref{Kind: kind, Name: v.Name}
			if f, dup := byRef[ref]; dup {
				p.errorf(item, ref.String(), "duplicate resource: %s is already declared at line %d", ref, f.line)
				continue
			}
			byRef[ref] = first{item.Line}
			g.Vertices = append(g.Vertices, v)
		}
	}
}

// resource decodes and validates one resource; nil when it is invalid (the
// errors are recorded).
func (p *parser) resource(kind string, n *yaml.Node) *engine.Vertex {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "", "resources: %s: want a mapping with a name and parameters, found %s", kind, describe(n))
		return nil
	}
	var nameNode, metaNode *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "name":
			nameNode = n.Content[i+1]
		case "meta":
			metaNode = n.Content[i+1]
		}
	}
	if nameNode == nil {
		p.errorf(n, "", "a %s resource has no name: every resource needs a name, unique for its kind", kind)
		return nil
	}
	var name string
	if !p.scalar(nameNode, kind+"[?]", "name", &name) {
		return nil
	}
	exported := strings.HasPrefix(name, "@@")
	name = strings.TrimPrefix(name, "@@")
	if name == "" {
		p.errorf(nameNode, "", "a %s resource has an empty name", kind)
		return nil
	}
	ref := kind + "[" + name + "]"
	before := len(p.errs)
	res, _ := engine.NewRes(kind)
	p.decodeStrict(n, res, "parameters", ref, "name", "meta")
	meta := engine.DefaultMeta()
	if metaNode != nil && !(metaNode.Kind == yaml.ScalarNode && metaNode.Tag == "!!null") {
		p.decodeStrict(metaNode, &meta, "meta", ref)
	}
	if len(p.errs) > before {
		return nil
	}
	v, err := NewVertex(kind, name, exported, meta, res)
	if err != nil {
		p.errorf(n, ref, "%v", err)
		return nil
	}
	v.Source = p.pos(n)
	return v
}

// NewVertex validates a decoded resource and wraps it into a vertex with
// its Hash. It is also how collected resources enter a graph.
func NewVertex(kind, name string, exported bool, meta engine.Meta, res engine.Res) (*engine.Vertex, error) {
	if n, ok := res.(engine.Namer); ok {
		n.SetName(name)
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if err := res.Validate(); err != nil {
		return nil, err
	}
	// JSON, not YAML: the hash only needs a canonical form, and encoding
	// thousands of resources as YAML took a third of a one-shot run.
	params, err := json.Marshal(res)
	if err != nil {
		if params, err = yaml.Marshal(res); err != nil {
			return nil, fmt.Errorf("encode parameters: %w", err)
		}
	}
	metaText, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%t\x00", kind, name, exported)
	h.Write(metaText)
	h.Write([]byte{0})
	h.Write(params)
	return &engine.Vertex{
		Kind: kind, Name: name, Exported: exported, Meta: meta, Res: res,
		Hash: hex.EncodeToString(h.Sum(nil)),
	}, nil
}

// Params encodes a resource's parameters as YAML, the form in which
// exported resources travel between hosts.
func Params(res engine.Res) ([]byte, error) {
	return yaml.Marshal(res)
}

// DecodeRes decodes YAML parameters (as Params wrote them) strictly into a
// new resource of kind; source names their origin in messages.
func DecodeRes(source, kind, name string, params []byte) (engine.Res, error) {
	res, ok := engine.NewRes(kind)
	if !ok {
		return nil, fmt.Errorf("%s: unknown resource kind %q", source, kind)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(params, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s[%s]: %w", source, kind, name, err)
	}
	if len(doc.Content) == 0 {
		return res, nil
	}
	p := &parser{file: source}
	p.decodeStrict(doc.Content[0], res, "parameters", kind+"["+name+"]")
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return res, nil
}

func (p *parser) edges(g *Graph, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "", "edges: want a list of edges, found %s", describe(n))
		return
	}
	known := map[engine.Ref]bool{}
	for _, v := range g.Vertices {
		known[engine.Ref{Kind: v.Kind, Name: v.Name}] = true
	}
	for _, e := range n.Content {
		if e.Kind != yaml.MappingNode {
			p.errorf(e, "", "edges: want an edge (a mapping with name, from, to), found %s", describe(e))
			continue
		}
		var raw struct {
			Name   string    `yaml:"name"`
			From   yaml.Node `yaml:"from"`
			To     yaml.Node `yaml:"to"`
			Notify bool      `yaml:"notify"`
		}
		before := len(p.errs)
		p.decodeStrict(e, &raw, "edge", "")
		if len(p.errs) > before {
			continue
		}
		what := "edge"
		if raw.Name != "" {
			what = fmt.Sprintf("edge %q", raw.Name)
		}
		from, okF := p.ref(&raw.From, e, what, "from", known)
		to, okT := p.ref(&raw.To, e, what, "to", known)
		if !okF || !okT {
			continue
		}
		g.Edges = append(g.Edges, engine.EdgeDecl{Name: raw.Name, From: from, To: to, Notify: raw.Notify, Source: p.pos(e)})
	}
}

func (p *parser) ref(n, edge *yaml.Node, what, side string, known map[engine.Ref]bool) (engine.Ref, bool) {
	if n.Kind == 0 {
		p.errorf(edge, "", "%s: no %q: want %s: {kind: KIND, name: NAME}", what, side, side)
		return engine.Ref{}, false
	}
	var raw struct {
		Kind string `yaml:"kind"`
		Res  string `yaml:"res"` // the legacy spelling of kind
		Name string `yaml:"name"`
	}
	before := len(p.errs)
	p.decodeStrict(n, &raw, what+" "+side, "")
	if len(p.errs) > before {
		return engine.Ref{}, false
	}
	kind := raw.Kind
	if kind == "" {
		kind = raw.Res
	}
	if kind == "" || raw.Name == "" {
		p.errorf(n, "", "%s: %s needs both kind and name", what, side)
		return engine.Ref{}, false
	}
	r := engine.Ref{Kind: kind, Name: strings.TrimPrefix(raw.Name, "@@")}
	if !known[r] {
		p.errorf(n, "", "%s: %s names %s, which is not declared in this graph", what, side, r)
		return engine.Ref{}, false
	}
	return r, true
}

func (p *parser) collect(g *Graph, n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "", "collect: want a list of {kind, pattern}, found %s", describe(n))
		return
	}
	for _, c := range n.Content {
		var raw struct {
			Kind    string `yaml:"kind"`
			Pattern string `yaml:"pattern"`
		}
		before := len(p.errs)
		p.decodeStrict(c, &raw, "collect", "")
		if len(p.errs) > before {
			continue
		}
		res, ok := engine.NewRes(raw.Kind)
		if !ok {
			p.errorf(c, "", "collect: unknown resource kind %q", raw.Kind)
			continue
		}
		if _, ok := res.(engine.Collector); !ok {
			p.errorf(c, "", "collect: resources of kind %q cannot be collected", raw.Kind)
			continue
		}
		g.Collect = append(g.Collect, engine.CollectDecl{Kind: raw.Kind, Pattern: raw.Pattern, Source: p.pos(c)})
	}
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Column < es[j].Column
	})
}

// syntaxError turns a YAML parser error into an Error with the line. The
// YAML library reports syntax errors only as text ("yaml: line 3: ..."), so
// the line number is read from it; everything else here uses node positions.
func syntaxError(file string, err error) *Error {
	msg := err.Error()
	e := &Error{File: file}
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ":"); ok {
			fmt.Sscanf(num, "%d", &e.Line)
			msg = strings.TrimSpace(after)
		}
	}
	e.Msg = "invalid YAML: " + msg
	return e
}
