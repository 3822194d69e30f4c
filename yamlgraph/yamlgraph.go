// Package yamlgraph reads the YAML graph format (resources by kind, edges,
// collect entries) into an engine declaration, with errors that name the
// file, line, column and resource.
package yamlgraph

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/quote"
	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what ParseFile reads: a graph file is text a person wrote.
const MaxFileSize = 32 << 20

// Graph is a parsed graph file.
type Graph struct {
	File    string
	Comment string
	// Local lists the local files the graph refers to by a path relative
	// to its own directory (a file resource's relative source), made
	// absolute, in file order: what a deploy bundles with the graph.
	Local []LocalPath
	engine.Decl
	Selection Selection // what rendering for a host did (ParseWith)
}

// LocalPath is one local file a graph refers to by a relative path.
type LocalPath struct {
	Path string // absolute, resolved against the graph file's directory
	Pos  string // file:line:col of the resource
	Res  string // kind[name]
}

// pathResolver is a resource with paths relative to the graph file (a file
// resource's source): ResolvePaths makes them absolute against base, the
// graph file's directory, before the resource is validated, and returns
// the paths it resolved.
type pathResolver interface {
	ResolvePaths(base string) []string
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

// ParseFile reads and parses a graph file for no host in particular (see
// Parse).
func ParseFile(path string) (*Graph, error) {
	return ParseFileWith(path, Options{})
}

// maxErrors bounds the problems reported for one file; the rest are counted.
const maxErrors = 100

type parser struct {
	file    string
	base    string // the directory of file, absolute: where relative paths start
	local   []LocalPath
	errs    Errors
	dropped int // problems beyond maxErrors
	first   *yaml.Node
	render  *renderer // templates and host selection
}

func (p *parser) errorf(n *yaml.Node, res, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		if p.dropped == 0 {
			p.first = n
		}
		p.dropped++
		return
	}
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
// and validated, every edge resolved, no cycle among the declared edges.
// Its templates are checked for no host in particular: ParseWith with no
// Options.Host.
func Parse(file string, data []byte) (*Graph, error) {
	return parseWith(file, data, Options{})
}

func parseWith(file string, data []byte, opt Options) (*Graph, error) {
	if e := checkText(file, data); e != nil {
		return nil, Errors{e}
	}
	doc, e := readYAML(file, data)
	if e != nil {
		return nil, Errors{e}
	}
	p := &parser{file: file, base: baseDir(file)}
	if p.checkTags(doc); len(p.errs) > 0 {
		return nil, p.failed()
	}
	if p.prepare(doc.Content[0], data, opt); len(p.errs) > 0 {
		return nil, p.failed()
	}
	root := deref(doc.Content[0])
	top := []string{"collect", "comment", "edges", "graph", "resources"}
	if root.Kind != yaml.MappingNode {
		hint := ""
		if root.Kind == yaml.ScalarNode && contains(top, root.Value) {
			hint = fmt.Sprintf(" (%s: with a colon?)", root.Value)
		}
		p.errorf(root, "", "the top level is %s%s: want a mapping with keys graph, comment, resources, edges, collect", describe(root), hint)
		return nil, p.errs
	}
	g := &Graph{File: file}
	var resources, edges, collect *yaml.Node
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if !p.key(k, "", "top level") {
			continue
		}
		if prev := seen[k.Value]; prev != nil {
			p.errorf(k, "", "key %s is given twice (first at line %d): give it once", quote.String(k.Value), prev.Line)
			continue
		}
		seen[k.Value] = k
		switch k.Value {
		case "graph":
			if p.scalar(v, "", "graph", &g.Name) {
				if msg := checkName(g.Name); msg != "" {
					p.errorf(v, "", "the graph's name %s", msg)
				}
			}
		case "comment":
			p.scalar(v, "", "comment", &g.Comment)
		case "resources":
			resources = v
			p.resources(g, v)
		case "edges":
			edges = v
		case "collect":
			collect = v
		default:
			p.errorf(k, "", "unknown top-level key %s%s; valid keys: %s", quote.String(k.Value), suggest(k.Value, top), strings.Join(top, ", "))
		}
	}
	if len(p.errs) == 0 && len(g.Vertices) == 0 {
		if resources == nil {
			p.errorf(root, "", "no resources: section: a graph needs at least one resource, e.g. resources: {noop: [{name: a}]}")
		} else {
			p.errorf(resources, "", "resources: none declared: a graph needs at least one resource, e.g. noop: [{name: a}]")
		}
	}
	if edges != nil {
		p.edges(g, edges)
	}
	if collect != nil {
		p.collect(g, collect)
	}
	if len(p.errs) > 0 {
		return nil, p.failed()
	}
	g.Selection = p.render.sel
	g.Local = p.local
	return g, nil
}

// failed sorts the problems found, counting those beyond maxErrors.
func (p *parser) failed() Errors {
	sortErrors(p.errs)
	if p.dropped > 0 {
		e := &Error{File: p.file, Msg: fmt.Sprintf("%d more problems not shown: fix the ones above first", p.dropped)}
		if p.first != nil {
			e.Line, e.Column = p.first.Line, p.first.Column
		}
		p.errs = append(p.errs, e)
	}
	return p.errs

}

// baseDir is the absolute directory of a graph file: relative paths in the
// graph start there, wherever the process runs.
func baseDir(file string) string {
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// key checks that a mapping key is a plain string; what names where it is.
func (p *parser) key(k *yaml.Node, res, what string) bool {
	k = deref(k)
	switch {
	case k.Kind != yaml.ScalarNode:
		p.errorf(k, res, "%s: a key is %s: want a name", what, describe(k))
		return false
	case k.Tag == "!!merge":
		p.errorf(k, res, "%s: merge keys (<<) are not supported: write the fields out", what)
		return false
	}
	return true
}

func (p *parser) scalar(n *yaml.Node, res, what string, dst *string) bool {
	n = deref(n)
	if n.Kind != yaml.ScalarNode || isNull(n) && what == "name" {
		p.errorf(n, res, "%s: want a string, found %s", what, describe(n))
		return false
	}
	*dst = n.Value
	return true
}

func (p *parser) resources(g *Graph, n *yaml.Node) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "", "resources: want a mapping of kind to list of resources, e.g. noop: [{name: a}], found %s", describe(n))
		return
	}
	byRef := map[engine.Ref]*yaml.Node{}
	byKind := map[string]*yaml.Node{}
	kinds := engine.Kinds()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, list := deref(n.Content[i]), deref(n.Content[i+1])
		if !p.key(k, "", "resources") {
			continue
		}
		kind := k.Value
		if _, ok := engine.NewRes(kind); !ok {
			p.errorf(k, "", "unknown resource kind %s%s; known kinds: %s", quote.String(kind), suggest(kind, kinds), strings.Join(kinds, ", "))
			continue
		}
		if prev := byKind[kind]; prev != nil {
			p.errorf(k, "", "resources: kind %s is given twice (first at line %d): put all its resources in one list", kind, prev.Line)
			continue
		}
		byKind[kind] = k
		if isNull(list) {
			continue
		}
		if list.Kind != yaml.SequenceNode {
			p.errorf(list, "", "resources: %s: want a list of resources (- name: ...), found %s", kind, describe(list))
			continue
		}
		for _, item := range list.Content {
			item = deref(item)
			v := p.resource(kind, item)
			if v == nil {
				continue
			}
			ref := engine.Ref{Kind: kind, Name: v.Name}
			if f, dup := byRef[ref]; dup {
				p.errorf(item, ref.String(), "duplicate resource: %s is already declared at line %d: names must be unique for a kind (an exported @@name counts as name)", ref, f.Line)
				continue
			}
			byRef[ref] = item
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
	var dupNode, firstNode *yaml.Node // a name or meta given twice
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Value != "name" && k.Value != "meta" {
			continue
		}
		if prev := first[k.Value]; prev != nil && dupNode == nil {
			dupNode, firstNode = k, prev
		} else if prev == nil {
			first[k.Value] = k
		}
		if k.Value == "name" {
			nameNode = n.Content[i+1]
		} else {
			metaNode = deref(n.Content[i+1])
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
		p.errorf(nameNode, "", "a %s resource has an empty name: want a name, unique for its kind", kind)
		return nil
	}
	if msg := checkName(name); msg != "" {
		p.errorf(nameNode, "", "a %s resource's name %s", kind, msg)
		return nil
	}
	ref := kind + "[" + name + "]"
	before := len(p.errs)
	if dupNode != nil {
		p.errorf(dupNode, ref, "field %q is given twice (first at line %d): give it once", dupNode.Value, firstNode.Line)
	}
	res, _ := engine.NewRes(kind)
	p.decodeStrict(n, res, "parameters", ref, "name", "meta")
	meta := engine.DefaultMeta()
	if metaNode != nil && !isNull(metaNode) {
		metaBefore := len(p.errs)
		p.decodeStrict(metaNode, &meta, "meta", ref)
		if len(p.errs) == metaBefore {
			p.checkMeta(metaNode, ref)
		}
	}
	if len(p.errs) > before {
		return nil
	}
	var local []string
	if pr, ok := res.(pathResolver); ok {
		local = pr.ResolvePaths(p.base)
	}
	v, err := p.newVertex(n, kind, name, exported, meta, res)
	if err != nil {
		// A kind reports every problem at once (errors.Join): one message each.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				p.errorf(n, ref, "%v", e)
			}
		} else {
			p.errorf(n, ref, "%v", err)
		}
		return nil
	}
	v.Source = p.pos(n)
	for _, l := range local {
		p.local = append(p.local, LocalPath{Path: l, Pos: v.Source, Res: ref})
	}
	return v
}

// checkMeta validates each meta parameter on its own, so that each invalid
// one is reported at its own line with what would be valid.
func (p *parser) checkMeta(n *yaml.Node, ref string) {
	fs := fieldsOf(reflect.TypeFor[engine.Meta]())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		path, ok := fs.index[k.Value]
		if !ok {
			continue
		}
		one := engine.DefaultMeta()
		if decodeValue(v, reflect.ValueOf(&one).Elem().FieldByIndex(path)) != nil {
			continue
		}
		if err := one.Validate(); err != nil {
			if j, ok := err.(interface{ Unwrap() []error }); ok { // every bad sema entry
				for _, e := range j.Unwrap() {
					p.errorf(deref(v), ref, "%v", e)
				}
			} else {
				p.errorf(deref(v), ref, "%v", err)
			}
		}
	}
}

// NewVertex validates a decoded resource and wraps it into a vertex (the
// engine gives it its identity at Compile). It is also how collected
// resources enter a graph.
func NewVertex(kind, name string, exported bool, meta engine.Meta, res engine.Res) (*engine.Vertex, error) {
	if i := strings.IndexFunc(name, unicode.IsControl); i >= 0 || name == "" {
		return nil, fmt.Errorf("name %q: want printable text, not empty", short(name))
	}
	if n, ok := res.(engine.Namer); ok {
		n.SetName(name)
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if err := res.Validate(); err != nil {
		return nil, err
	}
	return &engine.Vertex{Kind: kind, Name: name, Exported: exported, Meta: meta, Res: res}, nil
}

// Params encodes a resource's parameters as YAML, the form in which
// exported resources travel between hosts.
func Params(res engine.Res) ([]byte, error) {
	return yaml.Marshal(res)
}

// DecodeRes decodes YAML parameters (as Params wrote them) strictly into a
// new resource of kind; source names their origin in messages. They come
// from another host, so they are held to what a graph file is: one
// document (a second one, YAML after --- or JSON after the first value,
// is refused, never partly used), no tags, a name as a graph allows.
func DecodeRes(source, kind, name string, params []byte) (engine.Res, error) {
	res, ok := engine.NewRes(kind)
	if !ok {
		return nil, fmt.Errorf("%s: unknown resource kind %s", source, quote.String(kind))
	}
	ref := kind + "[" + short(name) + "]"
	if msg := checkName(name); msg != "" {
		return nil, fmt.Errorf("%s: %s: the name %s", source, ref, msg)
	}
	if len(params) > MaxFileSize {
		return nil, fmt.Errorf("%s: %s: %d bytes of parameters: want at most %d", source, ref, len(params), MaxFileSize)
	}
	if !utf8.Valid(params) {
		return nil, fmt.Errorf("%s: %s: the parameters are not UTF-8 text", source, ref)
	}
	doc, e := readYAML(source, params)
	if e != nil {
		if len(bytes.TrimSpace(params)) == 0 || strings.HasPrefix(e.Msg, "file holds no YAML content") {
			return res, nil // no parameters: all defaults
		}
		if strings.HasPrefix(e.Msg, "a second YAML document") {
			e.Msg = "a second YAML document starts here: exported parameters are one document; refused, not partly used"
		}
		e.Res = ref
		return nil, Errors{e}
	}
	p := &parser{file: source}
	if p.checkTags(doc); len(p.errs) > 0 {
		for _, e := range p.errs {
			e.Res = ref
		}
		return nil, p.errs
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return res, nil
	}
	p.decodeStrict(deref(doc.Content[0]), res, "parameters", ref)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return res, nil
}

func (p *parser) edges(g *Graph, n *yaml.Node) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "", "edges: want a list of edges (- {name: NAME, from: {kind: KIND, name: NAME}, to: {...}}), found %s", describe(n))
		return
	}
	known := map[engine.Ref]bool{}
	byKind := map[string][]string{}
	for _, v := range g.Vertices {
		known[engine.Ref{Kind: v.Kind, Name: v.Name}] = true
		byKind[v.Kind] = append(byKind[v.Kind], v.Name)
	}
	var nodes []*yaml.Node // of g.Edges, for cycle messages
	for _, e := range n.Content {
		e = deref(e)
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
		what := "edge"
		var nameNode *yaml.Node
		for i := 0; i+1 < len(e.Content); i += 2 {
			if k, v := deref(e.Content[i]), deref(e.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
				what = fmt.Sprintf("edge %s", quote.String(v.Value))
				nameNode = v
			}
		}
		before := len(p.errs)
		p.decodeStrict(e, &raw, what, "")
		if raw.Name != "" && nameNode != nil {
			if msg := checkName(raw.Name); msg != "" {
				p.errorf(nameNode, "", "an edge's name %s", msg)
			}
		}
		if len(p.errs) > before {
			continue
		}
		from, okF := p.ref(&raw.From, e, what, "from", known, byKind)
		to, okT := p.ref(&raw.To, e, what, "to", known, byKind)
		if !okF || !okT {
			continue
		}
		if from == to {
			p.errorf(e, "", "%s: from and to are both %s: a resource cannot come before itself; remove the edge", what, from)
			continue
		}
		g.Edges = append(g.Edges, engine.EdgeDecl{Name: raw.Name, From: from, To: to, Notify: raw.Notify, Source: p.pos(e)})
		nodes = append(nodes, e)
	}
	p.cycles(g, nodes)
}

func (p *parser) ref(n, edge *yaml.Node, what, side string, known map[engine.Ref]bool, byKind map[string][]string) (engine.Ref, bool) {
	if n.Kind == 0 {
		p.errorf(edge, "", "%s: no %q: want %s: {kind: KIND, name: NAME}", what, side, side)
		return engine.Ref{}, false
	}
	n = deref(n)
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
		p.errorf(n, "", "%s: %s needs both kind and name: want %s: {kind: KIND, name: NAME}", what, side, side)
		return engine.Ref{}, false
	}
	r := engine.Ref{Kind: kind, Name: strings.TrimPrefix(raw.Name, "@@")}
	if known[r] {
		return r, true
	}
	declared := byKind[kind]
	var hint string
	switch {
	case len(declared) == 0:
		kinds := make([]string, 0, len(byKind))
		for k := range byKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		hint = fmt.Sprintf("; no %s resource is declared%s; declared kinds: %s", short(kind), suggest(kind, kinds), strings.Join(kinds, ", "))
	case len(declared) <= 10:
		hint = fmt.Sprintf("; declared %s resources: %s", kind, strings.Join(declared, ", "))
	default:
		hint = suggest(r.Name, declared)
	}
	p.errorf(n, "", "%s: %s names %s, which is not declared in this graph%s", what, side, engine.Ref{Kind: short(r.Kind), Name: short(r.Name)}, hint)
	return engine.Ref{}, false
}

// cycles refuses cycles among the declared edges, each reported at the
// edge that closes it, with the edges to choose from to break it. (Compile
// also refuses cycles, those that automatic edges make included, but can
// only name the resources.)
func (p *parser) cycles(g *Graph, nodes []*yaml.Node) {
	out := map[engine.Ref][]int{} // edges leaving each resource, by index
	for i, e := range g.Edges {
		out[e.From] = append(out[e.From], i)
	}
	const (
		white = iota
		grey
		black
	)
	color := map[engine.Ref]int{}
	type frame struct {
		at   engine.Ref
		next int // index into out[at]
		via  int // the edge that led here; -1 at the root
	}
	for _, v := range g.Vertices {
		root := engine.Ref{Kind: v.Kind, Name: v.Name}
		if color[root] != white {
			continue
		}
		stack := []frame{{at: root, via: -1}}
		color[root] = grey
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next == len(out[top.at]) {
				color[top.at] = black
				stack = stack[:len(stack)-1]
				continue
			}
			ei := out[top.at][top.next]
			top.next++
			to := g.Edges[ei].To
			switch color[to] {
			case white:
				color[to] = grey
				stack = append(stack, frame{at: to, via: ei})
			case grey: // back to a resource on the path: a cycle
				start := len(stack) - 1
				for stack[start].at != to {
					start--
				}
				var path, via []string
				for _, f := range stack[start:] {
					path = append(path, f.at.String())
				}
				for _, f := range stack[start+1:] {
					via = append(via, p.edgeName(g, nodes, f.via))
				}
				via = append(via, p.edgeName(g, nodes, ei))
				path = append(path, to.String())
				p.errorf(nodes[ei], "", "the edges make a cycle: %s; remove or reverse one of the edges %s",
					strings.Join(path, " -> "), strings.Join(via, ", "))
			}
		}
	}
}

func (p *parser) edgeName(g *Graph, nodes []*yaml.Node, i int) string {
	if g.Edges[i].Name != "" {
		return fmt.Sprintf("%s (line %d)", quote.String(g.Edges[i].Name), nodes[i].Line)
	}
	return fmt.Sprintf("at line %d", nodes[i].Line)
}

func (p *parser) collect(g *Graph, n *yaml.Node) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "", "collect: want a list of {kind: KIND, pattern: PATTERN}, found %s", describe(n))
		return
	}
	var collectable []string
	for _, k := range engine.Kinds() {
		if r, _ := engine.NewRes(k); r != nil {
			if _, ok := r.(engine.Collector); ok {
				collectable = append(collectable, k)
			}
		}
	}
	seen := map[string]*yaml.Node{}
	for _, c := range n.Content {
		c = deref(c)
		var raw struct {
			Kind    string `yaml:"kind"`
			Pattern string `yaml:"pattern"`
		}
		before := len(p.errs)
		p.decodeStrict(c, &raw, "collect", "")
		if len(p.errs) > before {
			continue
		}
		patNode := c
		for i := 0; i+1 < len(c.Content); i += 2 {
			if deref(c.Content[i]).Value == "pattern" {
				patNode = deref(c.Content[i+1])
			}
		}
		res, ok := engine.NewRes(raw.Kind)
		switch {
		case raw.Kind == "":
			p.errorf(c, "", "collect: no kind: want kind: one of %s", strings.Join(collectable, ", "))
			continue
		case !ok:
			p.errorf(c, "", "collect: unknown resource kind %s%s; kinds that can be collected: %s", quote.String(raw.Kind), suggest(raw.Kind, collectable), strings.Join(collectable, ", "))
			continue
		}
		if _, ok := res.(engine.Collector); !ok {
			p.errorf(c, "", "collect: resources of kind %s cannot be collected; kinds that can: %s", raw.Kind, strings.Join(collectable, ", "))
			continue
		}
		if prev := seen[raw.Kind]; prev != nil {
			p.errorf(c, "", "collect: kind %s is given twice (first at line %d): one pattern per kind", raw.Kind, prev.Line)
			continue
		}
		seen[raw.Kind] = c
		if probed := p.render != nil && p.render.probed[c]; !probed && !p.pattern(patNode, raw.Kind, raw.Pattern, res) {
			continue
		}
		g.Collect = append(g.Collect, engine.CollectDecl{Kind: raw.Kind, Pattern: raw.Pattern, Source: p.pos(c)})
	}
}

// PatternChecker is a kind that can be collected and can check a collect
// pattern, so that a pattern it would refuse for every export is refused
// in the graph, at its line, instead of in a warning per collected
// resource at run time.
type PatternChecker interface {
	CheckPattern(pattern string) error
}

// pattern checks the collect pattern of kind at n; false if refused.
func (p *parser) pattern(n *yaml.Node, kind, pattern string, res engine.Res) bool {
	switch {
	case pattern == "":
		p.errorf(n, "", "collect: %s: no pattern: want pattern: what to collect into (for file, an absolute directory, e.g. /srv/collected/)", kind)
		return false
	case checkName(pattern) != "":
		p.errorf(n, "", "collect: %s: the pattern %s", kind, checkName(pattern))
		return false
	}
	if pc, ok := res.(PatternChecker); ok {
		if err := pc.CheckPattern(pattern); err != nil {
			p.errorf(n, "", "collect: %s: %v", kind, err)
			return false
		}
	}
	return true
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Column < es[j].Column
	})
}
