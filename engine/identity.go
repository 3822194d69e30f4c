package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
)

// identity is what a reload compares: a vertex whose identity is unchanged
// keeps running untouched. It covers the kind, the name, the export marker,
// every meta parameter and the kind's parameters (the resource's exported
// fields, read by reflection: unexported fields are the resource's own
// runtime state). The encoding is the engine's own, not JSON, so that every
// value a graph file may hold has one (a meta limit of .inf, say).
func identity(v *Vertex) (string, error) {
	return new(idEncoder).identity(v)
}

// identity is identity with the encoder's buffer, reused across vertices.
func (enc *idEncoder) identity(v *Vertex) (string, error) {
	enc.buf, enc.err = enc.buf[:0], nil
	enc.str(v.Kind)
	enc.str(v.Name)
	enc.value(reflect.ValueOf(v.Exported), 0)
	enc.value(reflect.ValueOf(v.Meta), 0)
	enc.str(reflect.TypeOf(v.Res).String())
	enc.value(reflect.ValueOf(v.Res), 0)
	if enc.err != nil {
		return "", fmt.Errorf("%s: the parameters have no identity: %w", v, enc.err)
	}
	sum := sha256.Sum256(enc.buf)
	return hex.EncodeToString(sum[:]), nil
}

// maxIDDepth bounds nesting, so that a resource pointing at itself is an
// error rather than endless recursion.
const maxIDDepth = 32

// idEncoder writes values unambiguously: every string is length-prefixed,
// every container is counted.
type idEncoder struct {
	buf []byte // the encoding so far
	err error
}

func (e *idEncoder) str(s string) {
	e.buf = strconv.AppendInt(e.buf, int64(len(s)), 10)
	e.buf = append(e.buf, ':')
	e.buf = append(e.buf, s...)
}

func (e *idEncoder) tag(c byte) { e.buf = append(e.buf, c) }

func (e *idEncoder) value(v reflect.Value, depth int) {
	if e.err != nil {
		return
	}
	if depth > maxIDDepth {
		e.err = fmt.Errorf("nested more than %d deep (a cycle?)", maxIDDepth)
		return
	}
	switch v.Kind() {
	case reflect.Invalid:
		e.tag('0')
	case reflect.Bool:
		e.tag('b')
		e.str(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.tag('i')
		e.str(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.tag('u')
		e.str(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		e.tag('f') // 'g' spells +Inf, -Inf and NaN too
		e.str(strconv.FormatFloat(v.Float(), 'g', -1, 64))
	case reflect.String:
		e.tag('s')
		e.str(v.String())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			e.tag('0')
			return
		}
		e.tag('p')
		e.value(v.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			e.tag('0')
			return
		}
		e.tag('l')
		e.str(strconv.Itoa(v.Len()))
		for i := range v.Len() {
			e.value(v.Index(i), depth+1)
		}
	case reflect.Map:
		if v.IsNil() {
			e.tag('0')
			return
		}
		e.tag('m')
		e.str(strconv.Itoa(v.Len()))
		keys := v.MapKeys()
		texts := make([]string, len(keys))
		for i, k := range keys {
			texts[i] = fmt.Sprint(k.Interface())
		}
		idx := make([]int, len(keys))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			switch {
			case texts[a] < texts[b]:
				return -1
			case texts[a] > texts[b]:
				return 1
			}
			return 0
		})
		for _, i := range idx {
			e.value(keys[i], depth+1)
			e.value(v.MapIndex(keys[i]), depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		e.tag('{')
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			e.str(f.Name)
			e.value(v.Field(i), depth+1)
		}
		e.tag('}')
	default: // func, chan, complex, unsafe pointer: not a parameter
		e.err = fmt.Errorf("field of type %s", v.Type())
	}
}
