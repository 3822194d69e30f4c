package yamlgraph

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

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
			p.errorf(k, res, "%s: unknown field %q%s; valid fields: %s", what, short(key), suggest(key, fs.names), strings.Join(fs.names, ", "))
			continue
		}
		f := rv.FieldByIndex(path)
		if err := decodeValue(v, f); err != nil {
			p.errorf(v, res, "%s: field %q: %v", what, key, err)
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
	tmp := reflect.New(f.Type())
	if err := v.Decode(tmp.Interface()); err != nil {
		return fmt.Errorf("want %s, found %s", describeType(f.Type()), describe(v))
	}
	f.Set(tmp.Elem())
	return nil
}

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
	if len(val) > 40 {
		cut := 37
		for cut > 0 && !utf8.RuneStart(val[cut]) {
			cut--
		}
		val = val[:cut] + "..."
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "number " + val
	case "!!bool":
		return "boolean " + val
	case "!!null":
		return "nothing"
	}
	return "string " + strconv.Quote(val)
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
