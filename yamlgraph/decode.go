package yamlgraph

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/mgmtconfig/mgmt/quote"
	"go.yaml.in/yaml/v3"
)

// fieldSet is the set of YAML keys a struct accepts, found by reflection.
type fieldSet struct {
	index map[string][]int // yaml key -> field index path
	names []string         // sorted keys, for messages
}

// fieldSets caches fieldsOf by type: it runs for every resource parsed.
var fieldSets sync.Map // reflect.Type -> fieldSet

func fieldsOf(t reflect.Type) fieldSet {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(fieldSet)
	}
	fs := fieldSetOf(t)
	fieldSets.Store(t, fs)
	return fs
}

func fieldSetOf(t reflect.Type) fieldSet {
	fs := fieldSet{index: map[string][]int{}}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			key, opts, _ := strings.Cut(tag, ",")
			if key == "-" {
				continue
			}
			path := append(append([]int{}, prefix...), i)
			if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
				walk(f.Type, path)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if key == "" {
				key = strings.ToLower(f.Name)
			}
			fs.index[key] = path
			fs.names = append(fs.names, key)
		}
	}
	walk(t, nil)
	sort.Strings(fs.names)
	return fs
}

// decodeStrict decodes the mapping node into the struct pointed to by ptr,
// one key at a time, so that an unknown key or a value of the wrong type is
// reported at its own line and column. skip lists keys handled elsewhere.
func (p *parser) decodeStrict(node *yaml.Node, ptr any, what, res string, skip ...string) {
	node = deref(node)
	if node.Kind != yaml.MappingNode {
		p.errorf(node, res, "%s: want a mapping of parameters, found %s", what, describe(node))
		return
	}
	rv := reflect.ValueOf(ptr).Elem()
	fs := fieldsOf(rv.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := deref(node.Content[i]), node.Content[i+1]
		if !p.key(k, res, what) {
			continue
		}
		key := k.Value
		if contains(skip, key) {
			continue
		}
		if prev := seen[key]; prev != nil {
			p.errorf(k, res, "%s: field %q is given twice (first at line %d): give it once", what, key, prev.Line)
			continue
		}
		seen[key] = k
		path, ok := fs.index[key]
		if !ok {
			p.errorf(k, res, "%s: unknown field %s%s; valid fields: %s", what, quote.String(key), suggest(key, fs.names), strings.Join(fs.names, ", "))
			continue
		}
		f := rv.FieldByIndex(path)
		if err := decodeValue(v, f); err != nil {
			at := v
			if ve, ok := err.(*valueError); ok {
				at = ve.Node
			}
			p.errorf(at, res, "%s: field %q: %v", what, key, err)
		}
	}
}

// decodeValue decodes one value node into a struct field, with a message a
// user can act on when the type is wrong.
func decodeValue(v *yaml.Node, f reflect.Value) error {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		f.Set(reflect.Zero(f.Type()))
		return nil
	}
	if err := checkValue(v, f.Type()); err != nil {
		return err
	}
	tmp := reflect.New(f.Type())
	if err := v.Decode(tmp.Interface()); err != nil {
		return fmt.Errorf("want %s, found %s", describeType(f.Type()), describe(v))
	}
	f.Set(tmp.Elem())
	return nil
}

// valueError is a value refused by checkValue, at the node (inside the
// value decoded) it is about.
type valueError struct {
	Node *yaml.Node
	Msg  string
}

func (e *valueError) Error() string { return e.Msg }

// checkValue refuses, before the YAML library decodes v into a t, what the
// library would accept and turn into something other than what was
// written: a quoted string into a boolean (the library reads "yes" and
// "on" as true, while "true" is refused), a fraction into a whole number
// (1.9 became 1, -.inf the smallest int64), NaN into a number, and a key
// given twice in a mapping (reported by the library as a type error).
func checkValue(v *yaml.Node, t reflect.Type) error {
	v = deref(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v.Kind == yaml.ScalarNode && isNull(v) {
		return nil
	}
	bad := func(n *yaml.Node, format string, args ...any) error {
		return &valueError{Node: n, Msg: fmt.Sprintf(format, args...)}
	}
	switch t.Kind() {
	case reflect.Bool:
		if v.Kind == yaml.ScalarNode && v.Style&quotedStyles != 0 {
			return bad(v, "want true or false, found %s: a quoted value is a string, never a boolean; write true or false without quotes", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.Kind == yaml.ScalarNode && v.Tag == "!!float" {
			var x float64
			if err := v.Decode(&x); err == nil && (x != math.Trunc(x) || math.IsInf(x, 0) || math.IsNaN(x)) {
				return bad(v, "want %s, found %s: it has no whole value", describeType(t), describe(v))
			}
		}
	case reflect.Float32, reflect.Float64:
		if v.Kind == yaml.ScalarNode && v.Tag == "!!float" {
			var x float64
			if err := v.Decode(&x); err == nil && math.IsNaN(x) {
				return bad(v, "want %s, found %s: not a number", describeType(t), describe(v))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Kind == yaml.SequenceNode {
			for _, item := range v.Content {
				if err := checkValue(item, t.Elem()); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if v.Kind == yaml.MappingNode {
			seen := map[string]*yaml.Node{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k := deref(v.Content[i])
				if k.Kind == yaml.ScalarNode {
					if prev := seen[k.Value]; prev != nil {
						return bad(k, "key %s is given twice (first at line %d): give it once", quote.String(k.Value), prev.Line)
					}
					seen[k.Value] = k
				}
				if err := checkValue(k, t.Key()); err != nil {
					return err
				}
				if err := checkValue(v.Content[i+1], t.Elem()); err != nil {
					return err
				}
			}
		}
	case reflect.Struct:
		if v.Kind == yaml.MappingNode {
			fs := fieldsOf(t)
			for i := 0; i+1 < len(v.Content); i += 2 {
				k := deref(v.Content[i])
				if path, ok := fs.index[k.Value]; ok {
					if err := checkValue(v.Content[i+1], t.FieldByIndex(path).Type); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// quotedStyles are the styles of a scalar written as a string: quoted, or
// a literal (|) or folded (>) block.
const quotedStyles = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle

// describe says what a node holds, for messages: `string "abc"`, `a list`.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return describe(deref(n)) + " (alias *" + short(n.Value) + ")"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	val := n.Value
	switch n.Tag {
	case "!!int", "!!float":
		return "number " + short(val)
	case "!!bool":
		return "boolean " + short(val)
	case "!!null":
		return "nothing"
	}
	if n.Style&quotedStyles != 0 {
		return "the quoted string " + quote.String(val)
	}
	return "string " + quote.String(val)
}

func describeType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return describeType(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		switch e := describeType(t.Elem()); e {
		case "true or false":
			return "a list of true or false"
		default:
			return "a list of " + strings.TrimPrefix(e, "a ") + "s"
		}
	case reflect.Map:
		return "a mapping"
	case reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns `; did you mean "x"?` for the closest valid name within a
// small edit distance, or "".
func suggest(got string, valid []string) string {
	if len(got) > 64 {
		return "" // no valid name is that long; spare the edit distances
	}
	best, bestD := "", 3
	if len(got) <= 3 {
		bestD = 2
	}
	for _, v := range valid {
		if d := editDistance(got, v); d < bestD {
			best, bestD = v, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
