package engine

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// Every meta duration is bounded, so that no valid value converts to a
// negative time.Duration ("timed out after -2540762h", or a poll ticker
// panicking on a non-positive interval).
func TestMetaDurationBounds(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  func(*Meta, int)
		max  int
		dur  func(Meta) time.Duration
		bad  int // a value once accepted that overflowed
	}{
		{"poll", func(m *Meta, x int) { m.Poll = x }, MaxPoll, Meta.PollEvery, 9300000000},
		{"timeout", func(m *Meta, x int) { m.Timeout = x }, MaxTimeout, Meta.TimeLimit, 9300000000},
		{"delay", func(m *Meta, x int) { m.Delay = x }, MaxDelay, Meta.RetryDelay, math.MaxInt64},
	} {
		m := DefaultMeta()
		tt.set(&m, tt.max)
		if err := m.Validate(); err != nil {
			t.Errorf("%s %d (the maximum) refused: %v", tt.name, tt.max, err)
		}
		if d := tt.dur(m); d <= 0 || d < 364*24*time.Hour {
			t.Errorf("%s %d is %v as a duration", tt.name, tt.max, d)
		}
		for _, bad := range []int{tt.max + 1, tt.bad, math.MaxInt64} {
			m := DefaultMeta()
			tt.set(&m, bad)
			if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "meta "+tt.name) {
				t.Errorf("%s %d accepted (%v)", tt.name, bad, err)
			}
		}
	}
	for _, l := range []float64{math.NaN(), MinLimit / 2, -1} {
		m := DefaultMeta()
		m.Limit = l
		if m.Validate() == nil {
			t.Errorf("limit %v accepted", l)
		}
	}
	for _, l := range []float64{0, MinLimit, 1e9, math.Inf(1)} {
		m := DefaultMeta()
		m.Limit = l
		if err := m.Validate(); err != nil {
			t.Errorf("limit %v refused: %v", l, err)
		}
	}
}

// Compile validates the meta parameters whatever front end built the
// vertex, naming the resource.
func TestCompileValidatesMeta(t *testing.T) {
	v := vtx("a", &fake{})
	v.Source = "g.yaml:2:3"
	v.Meta.Poll = 9300000000
	_, err := Compile(context.Background(), &Decl{Vertices: []*Vertex{v}}, quietLog())
	if err == nil || !strings.HasPrefix(err.Error(), "g.yaml:2:3: fake[a]: meta poll: 9300000000 is invalid") {
		t.Fatalf("got %v", err)
	}
}

// A panic in the engine's own part of a vertex (here the poll ticker, given
// an interval no validation allows) fails that vertex only; it once killed
// the process.
func TestPollPanicFailsOnlyItsVertex(t *testing.T) {
	bad, other := &fake{}, &fake{}
	bv := vtx("bad", bad)
	bv.Meta.Poll = 1
	g := graphOf(t, []*Vertex{bv, vtx("other", other)})
	bv.Meta.Poll = 9300000000 // after validation: overflows, and NewTicker panics on it
	err := runFor(t, g, 0)
	var re *RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].Res != "fake[bad]" ||
		!strings.Contains(re.Failures[0].Err.Error(), "watch panicked") {
		t.Fatalf("want a RunError naming fake[bad] and the panic, got %v", err)
	}
	if other.checks.Load() != 1 {
		t.Fatal("the other vertex did not converge")
	}
}
