package engine

import (
	"context"
	"math"
	"testing"
)

// paramRes is a fake kind with exported parameters of the shapes kinds use.
type paramRes struct {
	fake
	Cmd     string
	Content *string
	Env     map[string]string
	Args    []string
	Timeout float64
	state   int // runtime state: not a parameter
}

func idOf(t *testing.T, v *Vertex) string {
	t.Helper()
	g := compile(t, []*Vertex{v})
	return g.Vertices()[0].id
}

// The identity follows kind, name, the export marker, each meta parameter
// and each exported parameter, and nothing else; values JSON cannot encode
// (+Inf) have one.
func TestIdentityFollowsParameters(t *testing.T) {
	s := "x"
	base := func() *Vertex {
		return named("fake", "a", &paramRes{Cmd: "echo", Content: &s, Env: map[string]string{"A": "1", "B": "2", "C": "3"}, Args: []string{"a", "b"}, Timeout: math.Inf(1)})
	}
	want := idOf(t, base())
	if want == "" {
		t.Fatal("no identity")
	}
	same := map[string]func(*Vertex){
		"again":         func(*Vertex) {},
		"runtime state": func(v *Vertex) { v.Res.(*paramRes).state = 7 },
		"another map":   func(v *Vertex) { v.Res.(*paramRes).Env = map[string]string{"C": "3", "B": "2", "A": "1"} },
		"source":        func(v *Vertex) { v.Source = "elsewhere.yaml:1:1" },
	}
	for what, change := range same {
		v := base()
		change(v)
		if got := idOf(t, v); got != want {
			t.Errorf("%s: identity changed", what)
		}
	}
	differ := map[string]func(*Vertex){
		"kind":           func(v *Vertex) { v.Kind = "other" },
		"name":           func(v *Vertex) { v.Name = "b" },
		"exported":       func(v *Vertex) { v.Exported = true },
		"meta noop":      func(v *Vertex) { v.Meta.Noop = true },
		"meta autoedge":  func(v *Vertex) { v.Meta.AutoEdge = false },
		"meta autogroup": func(v *Vertex) { v.Meta.AutoGroup = false },
		"meta retry":     func(v *Vertex) { v.Meta.Retry = 2 },
		"meta delay":     func(v *Vertex) { v.Meta.Delay = 2 },
		"meta poll":      func(v *Vertex) { v.Meta.Poll = 2 },
		"meta limit":     func(v *Vertex) { v.Meta.Limit = math.Inf(1) },
		"meta burst":     func(v *Vertex) { v.Meta.Burst = 2 },
		"meta sema":      func(v *Vertex) { v.Meta.Sema = []string{"a:2"} },
		"meta sema text": func(v *Vertex) { v.Meta.Sema = []string{"a", "b"} },
		"meta timeout":   func(v *Vertex) { v.Meta.Timeout = 2 },
		"cmd":            func(v *Vertex) { v.Res.(*paramRes).Cmd = "echo two" },
		"content":        func(v *Vertex) { v.Res.(*paramRes).Content = nil },
		"map value":      func(v *Vertex) { v.Res.(*paramRes).Env["A"] = "2" },
		"nil map":        func(v *Vertex) { v.Res.(*paramRes).Env = nil },
		"list":           func(v *Vertex) { v.Res.(*paramRes).Args = []string{"ab"} },
		"float":          func(v *Vertex) { v.Res.(*paramRes).Timeout = 5 },
		"type":           func(v *Vertex) { v.Res = &fake{} },
	}
	seen := map[string]string{want: "base"}
	for what, change := range differ {
		v := base()
		change(v)
		got := idOf(t, v)
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same identity as %s", what, prev)
		}
		seen[got] = what
	}
	// "a", "b" and "ab" must not collide; neither may a sema list and its join.
	v1, v2 := base(), base()
	v1.Meta.Sema, v2.Meta.Sema = []string{"a b"}, []string{"a", "b"}
	if idOf(t, v1) == idOf(t, v2) {
		t.Error(`sema ["a b"] and ["a", "b"] have one identity`)
	}
}

// A parameter the engine cannot encode is refused at compile, naming the
// resource, instead of giving it an identity that never matches.
func TestIdentityRefusesFunctionParameters(t *testing.T) {
	type funcRes struct {
		fake
		F func()
	}
	v := named("fake", "f", &funcRes{F: func() {}})
	v.Source = "g.yaml:3:5"
	_, err := Compile(context.Background(), &Decl{Vertices: []*Vertex{v}}, quietLog())
	if err == nil || err.Error() != "g.yaml:3:5: fake[f]: the parameters have no identity: field of type func()" {
		t.Fatalf("got %v", err)
	}
}
