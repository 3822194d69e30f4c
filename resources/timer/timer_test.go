package timer

import (
	"bytes"
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// events records what Watch reports.
type events struct {
	running atomic.Int32
	dirty   chan struct{} // one value per Dirty call
}

func newEvents() *events { return &events{dirty: make(chan struct{}, 1000)} }

func (e *events) Running() { e.running.Add(1) }
func (e *events) Dirty() {
	select {
	case e.dirty <- struct{}{}:
	default:
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		interval float64
		want     string // "" means valid
	}{
		{30, ""},
		{1, ""},
		{0.05, ""},
		{0.001, ""},
		{1e9, ""},
		{0, "interval: 0 is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
		{-5, "interval: -5 is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
		{0.0001, "interval: 0.0001 is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
		{2e9, "interval: 2e+09 is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
		{math.NaN(), "interval: NaN is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
		{math.Inf(1), "interval: +Inf is invalid: want seconds from 0.001 to 1e+09, e.g. interval: 30"},
	}
	for _, tt := range tests {
		err := (&Timer{Interval: tt.interval}).Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Validate(interval %v) = %q, want %q", tt.interval, got, tt.want)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	decode := func(src string) (*Timer, error) {
		d := yaml.NewDecoder(bytes.NewBufferString(src))
		d.KnownFields(true)
		var tm Timer
		return &tm, d.Decode(&tm)
	}
	tm, err := decode("interval: 30\n")
	if err != nil || tm.Interval != 30 {
		t.Fatalf("decode interval 30: %+v, %v", tm, err)
	}
	if tm, err := decode("interval: 0.5\n"); err != nil || tm.Interval != 0.5 {
		t.Fatalf("decode interval 0.5: %+v, %v", tm, err)
	}
	if _, err := decode("intervall: 30\n"); err == nil {
		t.Fatal("a misspelled field decoded without error")
	}
}

func TestFirstCheckReportsNoChange(t *testing.T) {
	tm := &Timer{Interval: 30}
	for i, apply := range []bool{true, false, true} {
		if changed, err := tm.CheckApply(context.Background(), apply); changed || err != nil {
			t.Fatalf("check %d (apply %v) = %v, %v; want no change before the first interval", i, apply, changed, err)
		}
	}
}

func TestWatchFiresEveryInterval(t *testing.T) {
	const interval = 0.05
	tm := &Timer{Interval: interval}
	if err := tm.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ev := newEvents()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- tm.Watch(ctx, ev) }()

	if changed, _ := tm.CheckApply(ctx, true); changed {
		t.Fatal("the first check reported a change")
	}
	// Each Dirty is followed by a check. A check reports a change when a
	// firing happened since the last one; a Dirty whose firing an earlier,
	// late check already reported (the test was slow) reports none.
	const firings = 4
	changes := 0
	deadline := time.After(10 * time.Second)
	for changes < firings {
		select {
		case <-ev.dirty:
		case <-deadline:
			t.Fatalf("%d changes in 10s, want %d", changes, firings)
		}
		if ev.running.Load() != 1 {
			t.Fatalf("Running called %d times before Dirty, want 1", ev.running.Load())
		}
		changed, err := tm.CheckApply(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			continue
		}
		changes++
		if changed, _ := tm.CheckApply(ctx, true); changed {
			t.Fatalf("change %d: a second CheckApply right away reported another change", changes)
		}
	}
	if elapsed, min := time.Since(start), time.Duration(firings*interval*float64(time.Second)); elapsed < min {
		t.Errorf("%d firings took %v, less than %d intervals (%v)", firings, elapsed, firings, min)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

// Under meta poll the engine checks without watching: CheckApply alone keeps
// the schedule, and firings missed between checks collapse into one change.
func TestCheckWithoutWatch(t *testing.T) {
	const interval = 0.03
	tm := &Timer{Interval: interval}
	start := time.Now()
	if changed, _ := tm.CheckApply(context.Background(), false); changed {
		t.Fatal("the first check reported a change")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		changed, err := tm.CheckApply(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no change within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	if elapsed := time.Since(start); elapsed < time.Duration(interval*float64(time.Second)) {
		t.Fatalf("fired after %v, before its interval", elapsed)
	}
	// Let several firings pass unchecked: one check reports them all.
	time.Sleep(4 * time.Duration(interval*float64(time.Second)))
	if changed, _ := tm.CheckApply(context.Background(), true); !changed {
		t.Fatal("no change after several intervals")
	}
	if changed, _ := tm.CheckApply(context.Background(), true); changed {
		t.Fatal("missed firings were reported more than once")
	}
}
