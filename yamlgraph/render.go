package yamlgraph

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/facts"
	"go.yaml.in/yaml/v3"
)

// Options say for which host a graph is parsed.
type Options struct {
	// Host is what the graph's templates see ({{ .Hostname }},
	// {{ .Labels.role }}, {{ .Facts.os.id }}) and what its host selection
	// (meta hosts and labels) matches. Nil: no host in particular, as
	// `mgmt validate` without --hostname: every template is executed
	// against a probe that knows every fact name (see probeData), and
	// every resource is kept.
	Host *facts.Data
}

// Bounds on rendering: a template is text a person wrote, and its output
// a value of a resource.
const (
	MaxValueSize = 1 << 20     // bytes of one rendered value
	maxRendered  = MaxFileSize // bytes of all the rendered values of a file
	maxSteps     = 1 << 20     // iterations of {{ range }} in a file
	// maxBuild bounds what one function call may build before the length
	// of its result is checked, and maxBuilt what the calls of a file build
	// in all: a result is refused past MaxValueSize, but only once built,
	// and printf with 1000 uses of a 1 MB argument builds 1 GB first.
	maxBuild = 64 * MaxValueSize
	maxBuilt = 1024 * MaxValueSize
)

var (
	errValueSize = fmt.Errorf("the value renders to more than %d bytes", MaxValueSize)
	errFileSize  = fmt.Errorf("the rendered values of the file exceed %d MiB", maxRendered>>20)
	errSteps     = fmt.Errorf("the templates of the file iterate more than %d times in {{ range }}", maxSteps)
	errBuild     = fmt.Errorf("a function could build more than %d MiB before its result is bounded: give it fewer or shorter arguments", maxBuild>>20)
	errBuilt     = fmt.Errorf("the functions of the file's templates build more than %d MiB of text", maxBuilt>>20)
)

// ParseWith parses a graph from data as opt.Host sees it: the templates
// in its values are rendered with the host's facts first, and resources
// whose meta hosts or labels do not match the host are left out, with the
// edges to and from them (Graph.Selection says which). file names it in
// messages.
func ParseWith(file string, data []byte, opt Options) (*Graph, error) {
	return parseWith(file, data, opt)
}

// ParseFileWith reads a graph file and parses it as ParseWith does.
func ParseFileWith(path string, opt Options) (*Graph, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseWith(path, data, opt)
}

// readFile reads a graph file, refusing one larger than MaxFileSize.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read graph: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, Errors{tooBig(path, fi.Size())}
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileSize+1)); err != nil {
		return nil, fmt.Errorf("read graph %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// renderer renders the templates of one file's values, once each.
type renderer struct {
	p     *parser
	data  []byte      // the file, to place errors inside multi-line values
	host  *facts.Data // nil: the probe
	funcs template.FuncMap
	done  map[*yaml.Node]bool // scalars rendered already (an alias shares its anchor's node)
	// walked holds the lists and mappings walked already, with whether
	// they held a template: an alias is walked once, not once per path to
	// it (a tower of aliases has 4^40 paths in a few lines).
	walked map[*yaml.Node]bool
	total  int // bytes rendered so far
	steps  int // range iterations so far
	built  int // bytes the template functions may have built so far (charge)
	// probed holds the resource items whose parameters held templates
	// rendered against the probe: their values are placeholders, so their
	// kind's Validate is not run (see newVertex).
	probed map[*yaml.Node]bool
	sel    Selection
	off    map[engine.Ref]bool // resources not on this host, by raw and rendered name
	on     map[engine.Ref]bool // resources on this host, likewise
}

// prepare renders doc's templates for opt.Host and applies host
// selection, in place, before the graph is decoded: a rendered value is
// never rendered again (a fact holding "{{" stays literal). Problems are
// recorded on p.
func (p *parser) prepare(doc *yaml.Node, data []byte, opt Options) *renderer {
	r := &renderer{
		p: p, data: data, host: opt.Host,
		done: map[*yaml.Node]bool{}, walked: map[*yaml.Node]bool{}, probed: map[*yaml.Node]bool{}, off: map[engine.Ref]bool{}, on: map[engine.Ref]bool{},
	}
	if opt.Host != nil {
		r.sel.Host = opt.Host.Hostname
	}
	r.funcs = r.funcMap()
	p.render = r
	root := deref(doc)
	if root == nil || root.Kind != yaml.MappingNode {
		return r
	}
	// resources first: edges are dropped by the resources left out.
	sections := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := deref(root.Content[i]); k.Kind == yaml.ScalarNode {
			sections[k.Value] = deref(root.Content[i+1])
		}
	}
	if n := sections["resources"]; n != nil && n.Kind == yaml.MappingNode {
		r.resources(n)
	}
	if n := sections["edges"]; n != nil && n.Kind == yaml.SequenceNode {
		r.edges(n)
	}
	if n := sections["collect"]; n != nil && n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			if r.value(deref(c), "", "kind") && r.host == nil {
				r.probed[deref(c)] = true // its pattern is a placeholder
			}
		}
	}
	return r
}

// resources renders every resource on this host and takes those that are
// not out of their lists.
func (r *renderer) resources(n *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, list := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || list.Kind != yaml.SequenceNode {
			continue
		}
		kind := k.Value
		kept := list.Content[:0:0]
		selectedBy := map[string]bool{} // kept names: whether they had a host selection
		for _, item := range list.Content {
			it := deref(item)
			if it.Kind != yaml.MappingNode {
				kept = append(kept, item)
				continue
			}
			raw := itemName(it)
			res := kind + "[" + strings.TrimPrefix(raw, "@@") + "]"
			on, has := r.selectItem(it, kind, raw, res)
			if !on {
				continue
			}
			params := false
			for j := 0; j+1 < len(it.Content); j += 2 {
				switch key, v := deref(it.Content[j]), it.Content[j+1]; key.Value {
				case "name", "meta":
					r.value(v, res)
				default:
					params = r.value(v, res) || params
				}
			}
			if params && r.host == nil {
				r.probed[it] = true
			}
			name := strings.TrimPrefix(itemName(it), "@@")
			r.on[engine.Ref{Kind: kind, Name: strings.TrimPrefix(raw, "@@")}] = true
			r.on[engine.Ref{Kind: kind, Name: name}] = true
			if first, dup := selectedBy[name]; dup && r.host == nil && (has || first) {
				// Two resources of one name for different hosts (one
				// per role, say): each is checked, on its own.
				r.p.resources(&Graph{}, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{k, {Kind: yaml.SequenceNode, Content: []*yaml.Node{item}}}})
				continue
			}
			if _, dup := selectedBy[name]; !dup {
				selectedBy[name] = has
			}
			kept = append(kept, item)
		}
		list.Content = kept
	}
}

// itemName is the raw text of a resource item's name, or "?".
func itemName(it *yaml.Node) string {
	name := "?"
	for j := 0; j+1 < len(it.Content); j += 2 {
		if k, v := deref(it.Content[j]), deref(it.Content[j+1]); k.Value == "name" && v.Kind == yaml.ScalarNode {
			name = v.Value
		}
	}
	return name
}

// value renders every string scalar under n, mapping keys and the values
// of the keys in skip (kind names) excepted. It reports whether any held a
// template.
func (r *renderer) value(n *yaml.Node, res string, skip ...string) bool {
	n = deref(n)
	if n == nil {
		return false
	}
	if n.Kind == yaml.ScalarNode {
		return r.scalar(n, res)
	}
	if len(skip) == 0 {
		if any, ok := r.walked[n]; ok {
			return any
		}
		any := r.walk(n, res)
		r.walked[n] = any
		return any
	}
	return r.walk(n, res, skip...)
}

// walk is value of a list or mapping.
func (r *renderer) walk(n *yaml.Node, res string, skip ...string) bool {
	switch n.Kind {
	case yaml.SequenceNode:
		any := false
		for _, c := range n.Content {
			any = r.value(c, res, skip...) || any
		}
		return any
	case yaml.MappingNode:
		any := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := deref(n.Content[i]); k.Kind == yaml.ScalarNode && slices.Contains(skip, k.Value) {
				continue
			}
			any = r.value(n.Content[i+1], res, skip...) || any
		}
		return any
	}
	return false
}

// scalar renders one string scalar, in place, once.
func (r *renderer) scalar(n *yaml.Node, res string) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || !strings.Contains(n.Value, "{{") {
		return false
	}
	if r.done[n] {
		return true
	}
	r.done[n] = true
	r.sel.Templates++
	out, e := r.execute(n.Value)
	if e != nil {
		line, col := valuePos(r.data, n, e.off)
		r.p.errorf(&yaml.Node{Line: line, Column: col}, res, "template: %s", e.msg)
		return true
	}
	r.total += len(out)
	n.Value = out
	return true
}

// tmplError is a template problem at byte offset off of the value (-1:
// the value as a whole).
type tmplError struct {
	off int
	msg string
}

// execute parses and runs one value's template against the host's data,
// or the probe.
func (r *renderer) execute(text string) (string, *tmplError) {
	t, err := template.New("v").Funcs(r.funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", parseError(text, err)
	}
	if len(t.Templates()) > 1 {
		return "", &tmplError{strings.Index(text, "{{"), "{{ define }} and {{ block }} are not supported in graph values: write the text out"}
	}
	if e := r.prepareTree(text, t.Tree.Root); e != nil {
		return "", e
	}
	var data any
	if r.host != nil {
		data = *r.host
	} else {
		data = probeData(words(t.Tree.Root))
	}
	w := &limitWriter{max: min(MaxValueSize, maxRendered-r.total)}
	if err := t.Execute(w, data); err != nil {
		switch {
		case errors.Is(err, errValueSize) && w.max < MaxValueSize:
			return "", &tmplError{-1, errFileSize.Error()}
		case errors.Is(err, errValueSize):
			return "", &tmplError{-1, errValueSize.Error()}
		case errors.Is(err, errSteps):
			return "", &tmplError{-1, errSteps.Error()}
		case errors.Is(err, errBuild):
			return "", &tmplError{-1, errBuild.Error()}
		case errors.Is(err, errBuilt):
			return "", &tmplError{-1, errBuilt.Error()}
		}
		return "", r.execError(text, err)
	}
	return w.buf.String(), nil
}

// prepareTree refuses {{ template }} (a value is one template: a call of
// another could recurse without end) and makes every {{ range }} body
// count its iterations against maxSteps: a range over a number (the
// memory_bytes fact) or nested ranges would otherwise run for ages
// without output to bound.
func (r *renderer) prepareTree(text string, n parse.Node) *tmplError {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if e := r.prepareTree(text, c); e != nil {
				return e
			}
		}
	case *parse.TemplateNode:
		return &tmplError{strings.LastIndex(text[:min(int(n.Position()), len(text))], "{{"), "{{ template }} is not supported in graph values: write the text out"}
	case *parse.IfNode:
		return r.branch(text, &n.BranchNode)
	case *parse.WithNode:
		return r.branch(text, &n.BranchNode)
	case *parse.RangeNode:
		if e := r.branch(text, &n.BranchNode); e != nil {
			return e
		}
		step, err := template.New("step").Funcs(r.funcs).Parse("{{_step}}")
		if err != nil {
			return &tmplError{-1, err.Error()}
		}
		n.List.Nodes = append([]parse.Node{step.Tree.Root.Nodes[0]}, n.List.Nodes...)
	}
	return nil
}

func (r *renderer) branch(text string, b *parse.BranchNode) *tmplError {
	if e := r.prepareTree(text, b.List); e != nil {
		return e
	}
	return r.prepareTree(text, b.ElseList)
}

// limitWriter keeps what is written, up to max bytes.
type limitWriter struct {
	buf bytes.Buffer
	max int
}

func (w *limitWriter) Write(b []byte) (int, error) {
	if w.buf.Len()+len(b) > w.max {
		return 0, errValueSize
	}
	return w.buf.Write(b)
}

// funcMap is the functions templates may call beyond text/template's
// builtins (docs/fleet.md lists them): pure and deterministic, none reads
// the environment, the clock, a file or the network. The builtins that
// build strings are wrapped to bound what they return.
func (r *renderer) funcMap() template.FuncMap {
	return template.FuncMap{
		"default": func(def, v any) any {
			if empty(v) {
				return def
			}
			return v
		},
		"join": func(sep string, list any) (string, error) {
			rv := reflect.ValueOf(list)
			if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
				return "", fmt.Errorf("join: want a list, got %T", list)
			}
			parts := make([]string, rv.Len())
			n := 0
			for i := range parts {
				parts[i] = fmt.Sprint(rv.Index(i).Interface())
				n += len(parts[i]) + len(sep)
			}
			if err := r.charge(n, n); err != nil {
				return "", err
			}
			return bounded(strings.Join(parts, sep))
		},
		"lower": func(s string) (string, error) {
			return r.build(3*len(s), len(s), func() string { return strings.ToLower(s) })
		},
		"upper": func(s string) (string, error) {
			return r.build(3*len(s), len(s), func() string { return strings.ToUpper(s) })
		},
		"quote": func(s string) (string, error) {
			return r.build(10*len(s)+2, len(s), func() string { return strconv.Quote(s) })
		},
		"replace": func(old, new, s string) (string, error) { return r.replace(s, old, new) },
		"print": func(a ...any) (string, error) {
			n := argsSize(a)
			return r.build(n, n, func() string { return fmt.Sprint(a...) })
		},
		"println": func(a ...any) (string, error) {
			n := argsSize(a)
			return r.build(n, n, func() string { return fmt.Sprintln(a...) })
		},
		"printf": func(f string, a ...any) (string, error) {
			return r.build(printfBound(f, a), 0, func() string { return fmt.Sprintf(f, a...) })
		},
		"html": func(a ...any) (string, error) {
			n := argsSize(a)
			return r.build(6*n, n, func() string { return template.HTMLEscaper(a...) })
		},
		"js": func(a ...any) (string, error) {
			n := argsSize(a)
			return r.build(10*n, n, func() string { return template.JSEscaper(a...) })
		},
		"urlquery": func(a ...any) (string, error) {
			n := argsSize(a)
			return r.build(3*n, n, func() string { return template.URLQueryEscaper(a...) })
		},
		"_step": func() (string, error) {
			r.steps++
			if r.steps > maxSteps {
				return "", errSteps
			}
			return "", nil
		},
	}
}

// bounded refuses a string longer than a value may be: a template can
// otherwise double a string in each of a few actions.
func bounded(s string) (string, error) {
	if len(s) > MaxValueSize {
		return "", errValueSize
	}
	return s, nil
}

// replace is strings.ReplaceAll, refused before it builds a string
// longer than MaxValueSize.
func (r *renderer) replace(s, old, new string) (string, error) {
	n := len(s) + strings.Count(s, old)*(len(new)-len(old))
	if old == "" {
		n = len(s) + (utf8.RuneCountInString(s)+1)*len(new)
	}
	if n > MaxValueSize {
		return "", errValueSize
	}
	if err := r.charge(n, 0); err != nil {
		return "", err
	}
	return strings.ReplaceAll(s, old, new), nil
}

// build runs f, which builds at most most bytes and at least least, after
// charging most to the file's budget: refused before it runs if least is
// more than a value may hold or most more than a call may build.
func (r *renderer) build(most, least int, f func() string) (string, error) {
	if err := r.charge(most, least); err != nil {
		return "", err
	}
	return bounded(f())
}

// charge counts most bytes about to be built against maxBuild and
// maxBuilt; a result of at least least bytes is refused at once.
func (r *renderer) charge(most, least int) error {
	switch {
	case least > MaxValueSize:
		return errValueSize
	case most > maxBuild:
		return errBuild
	}
	r.built += most
	if r.built > maxBuilt {
		return errBuilt
	}
	return nil
}

// argsSize is what fmt.Sprint of a builds at most: the length of each
// argument printed on its own, and a space between any two.
func argsSize(a []any) int {
	n := len(a)
	for _, x := range a {
		if s, ok := x.(string); ok {
			n += len(s)
		} else {
			n += len(fmt.Sprint(x))
		}
	}
	return n
}

// printfBound is more than fmt.Sprintf(f, a...) can build: the format's
// text, and for each verb its width or precision (fmt takes neither above
// 1e6) and the longest argument escaped the longest way (%q, %x, %#v), and
// the %!(EXTRA ...) of arguments left over.
func printfBound(f string, a []any) int {
	widest, total := 0, 0
	for _, x := range a {
		n := argsSize([]any{x})
		widest, total = max(widest, n), total+n
	}
	n := len(f) + 8*total + 64*len(a) + 64
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		if i+1 < len(f) && f[i+1] == '%' {
			i++
			continue
		}
		pad, num := 0, 0
		for i++; i < len(f) && strings.IndexByte("+-# 0123456789.*[]", f[i]) >= 0; i++ {
			switch c := f[i]; {
			case c >= '0' && c <= '9':
				num = min(10*num+int(c-'0'), 1e6)
			case c == '*':
				num = 1e6
			default:
				num = 0
			}
			pad = max(pad, num)
		}
		n += pad + 8*widest + 400
	}
	return n
}

// empty is what default replaces: nothing, false, 0, "", an empty list
// or mapping.
func empty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	}
	return rv.IsZero()
}

// parseError places a template parse error. text/template reports it as
// text only ("template: v:2: function \"x\" not defined"), with a line and
// no column: the column is that of the name the message quotes, when it
// is on that line, else of the line's first action.
func parseError(text string, err error) *tmplError {
	msg := strings.TrimPrefix(err.Error(), "template: v:")
	num, rest, ok := strings.Cut(msg, ":")
	line, aerr := strconv.Atoi(num)
	if !ok || aerr != nil {
		return &tmplError{-1, err.Error()}
	}
	rest = strings.TrimSpace(rest)
	// "unclosed action started at v:1" is found at the end of the text.
	if i := strings.Index(rest, " started at v:"); i >= 0 {
		if n, err := strconv.Atoi(rest[i+len(" started at v:"):]); err == nil {
			line, rest = n, rest[:i]+": close it with }}"
		}
	}
	start := lineStart(text, line)
	lineText, _, _ := strings.Cut(text[start:], "\n")
	col := strings.Index(lineText, "{{")
	if q := quoted(rest); q != "" {
		if i := strings.Index(lineText, q); i >= 0 {
			col = i
		}
	}
	if col < 0 {
		col = 0
	}
	return &tmplError{start + col, rest}
}

// quoted returns the first double-quoted name in msg, or "".
func quoted(msg string) string {
	i := strings.IndexByte(msg, '"')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(msg[i+1:], '"')
	if j <= 0 {
		return ""
	}
	return msg[i+1 : i+1+j]
}

// lineStart is the byte offset of 1-based line n of text.
func lineStart(text string, n int) int {
	off := 0
	for l := 1; l < n; l++ {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return off
		}
		off += i + 1
	}
	return off
}

// execError places an execution error: text/template gives its place only
// as text ("template: v:1:11: executing \"v\" at <.Labels.x>: map has no
// entry for key \"x\""), a line and a 0-based byte offset in it.
func (r *renderer) execError(text string, err error) *tmplError {
	msg := strings.TrimPrefix(err.Error(), "template: v:")
	parts := strings.SplitN(msg, ":", 3)
	if len(parts) < 3 {
		return &tmplError{-1, err.Error()}
	}
	line, err1 := strconv.Atoi(parts[0])
	col, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return &tmplError{-1, err.Error()}
	}
	rest := strings.TrimSpace(parts[2])
	var at string
	if after, ok := strings.CutPrefix(rest, `executing "v" at <`); ok {
		if i := strings.Index(after, ">: "); i >= 0 {
			at, rest = after[:i], after[i+3:]
		}
	}
	msg = rest
	if at != "" {
		msg = fmt.Sprintf("%s: %s", at, rest)
		if hint := r.hint(at, rest); hint != "" {
			msg += ": " + hint
		}
	}
	off := lineStart(text, line) + col
	if off > len(text) {
		off = -1
	}
	// The offset is that of a field in a chain (.os of .Facts.os.id):
	// point at the whole of what failed when it is there.
	if at != "" && off >= 0 {
		if i := strings.LastIndex(text[:min(off+len(at), len(text))], at); i >= 0 && i+len(at) > off {
			off = i
		}
	}
	return &tmplError{off, msg}
}

// hint says what would be valid for an unknown name.
func (r *renderer) hint(at, msg string) string {
	key := quoted(msg)
	switch {
	case !strings.HasPrefix(msg, "map has no entry for key"):
		return ""
	case strings.HasPrefix(at, ".Labels") || strings.HasPrefix(at, ".Facts.labels"):
		have := "none"
		if r.host != nil && len(r.host.Labels) > 0 {
			have = strings.Join(slices.Sorted(mapsKeys(r.host.Labels)), ", ")
		}
		host := "this host"
		if r.host != nil {
			host = "host " + r.host.Hostname
		}
		return fmt.Sprintf("%s has no label %s (its labels: %s): give it with --label %s=VALUE, or write {{ index .Labels %q | default \"VALUE\" }}", host, key, have, key, key)
	case strings.HasPrefix(at, ".Facts"):
		return fmt.Sprintf("no such fact%s: `mgmt facts` prints every fact by name (docs/fleet.md)", suggest(key, factNames()))
	}
	return ""
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// factNames are the names of every level of facts.Map, for suggestions.
func factNames() []string {
	var names []string
	var walk func(m map[string]any)
	walk = func(m map[string]any) {
		for k, v := range m {
			names = append(names, k)
			if sub, ok := v.(map[string]any); ok {
				walk(sub)
			}
		}
	}
	walk(probeData(nil).Facts)
	slices.Sort(names)
	return names
}

// words are the identifiers and string constants of a template: the
// label keys and interface names it may look up, which the probe then
// has.
func words(n parse.Node) []string {
	seen := map[string]bool{}
	var out []string
	add := func(ws ...string) {
		for _, w := range ws {
			if !seen[w] && len(out) < 256 {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			add(n.Ident...)
		case *parse.VariableNode:
			add(n.Ident[1:]...)
		case *parse.ChainNode:
			walk(n.Node)
			add(n.Field...)
		case *parse.StringNode:
			add(n.Text)
		}
	}
	walk(n)
	return out
}

// probeData is the data templates see when a graph is parsed for no host:
// every fact of facts.Map by its name and type, with placeholder values
// ("<os.id>"), a label for each name the template uses, and an interface
// (eth0 and each such name) with two IPv4 and two IPv6 addresses. An
// unknown fact name is an error as on a real host; a missing label is not
// (labels differ from host to host).
func probeData(names []string) facts.Data {
	f := facts.Facts{
		Hostname: "<hostname>", FQDN: "<fqdn>",
		OS: facts.OS{ID: "<os.id>", IDLike: "<os.id_like>", Name: "<os.name>", PrettyName: "<os.pretty_name>",
			Version: "<os.version>", VersionID: "<os.version_id>", VersionCodename: "<os.version_codename>"},
		Arch: "<arch>", Machine: "<machine>", Kernel: "<kernel>", CPUs: 1, MemoryBytes: 1 << 30,
		Version: "<version>", Labels: map[string]string{},
	}
	for i, name := range append([]string{"eth0"}, names...) {
		f.Labels[name] = "<labels." + name + ">"
		for j := range 2 {
			f.Addresses = append(f.Addresses,
				facts.Address{Interface: name, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j + 1)}), 24)},
				facts.Address{Interface: name, Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i), 15: byte(j + 1)}), 64)})
		}
	}
	delete(f.Labels, "eth0")
	return f.Data()
}

// valuePos is the file position of byte offset off of n's value (-1: of
// n). It is exact where the value's text stands in the file as it is: a
// single-line plain or quoted value without escapes before off, a line of
// a literal block (|). Elsewhere (folded lines, escapes) it is n's
// position.
func valuePos(data []byte, n *yaml.Node, off int) (line, col int) {
	line, col = n.Line, n.Column
	if off < 0 || off > len(n.Value) {
		return line, col
	}
	val := n.Value
	ls := strings.LastIndexByte(val[:off], '\n') + 1
	vline := strings.Count(val[:off], "\n") // 0-based line in the value
	lineText, _, _ := strings.Cut(val[ls:], "\n")
	prefix := val[ls:off]
	var L, C0 int // the file line and column where the value's line starts
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		L = n.Line + 1 + vline
		indent := -1
		for l := n.Line + 1; indent < 0; l++ {
			t, ok := fileLine(data, l)
			if !ok {
				return line, col
			}
			if strings.TrimSpace(t) != "" {
				indent = len(t) - len(strings.TrimLeft(t, " "))
			}
		}
		C0 = indent + 1
	case vline == 0 && n.Style&(yaml.FoldedStyle) == 0:
		L, C0 = n.Line, n.Column
		if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
			C0++
		}
	default:
		return line, col
	}
	src, ok := fileLine(data, L)
	if !ok {
		return line, col
	}
	b := 0 // byte index of column C0 in src
	for c := 1; c < C0; c++ {
		if b >= len(src) {
			return line, col
		}
		_, size := utf8.DecodeRuneInString(src[b:])
		b += size
	}
	// The rest of the value's line must stand in the file as it is.
	if !strings.HasPrefix(src[b:], lineText[:min(len(lineText), len(prefix)+1)]) {
		return line, col
	}
	return L, C0 + utf8.RuneCountInString(prefix)
}

// fileLine is the text of 1-based line l of data, without its newline.
func fileLine(data []byte, l int) (string, bool) {
	for i := 1; i < l; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return "", false
		}
		data = data[j+1:]
	}
	t, _, _ := bytes.Cut(data, []byte{'\n'})
	return strings.TrimSuffix(string(t), "\r"), true
}

// newVertex is NewVertex, but for a resource whose parameters held
// templates rendered against the probe (no host): their values are
// placeholders, so only what does not depend on them is checked.
func (p *parser) newVertex(n *yaml.Node, kind, name string, exported bool, meta engine.Meta, res engine.Res) (*engine.Vertex, error) {
	if p.render == nil || !p.render.probed[n] {
		return NewVertex(kind, name, exported, meta, res)
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if nm, ok := res.(engine.Namer); ok {
		nm.SetName(name)
	}
	return &engine.Vertex{Kind: kind, Name: name, Exported: exported, Meta: meta, Res: res}, nil
}
