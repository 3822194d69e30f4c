// Package timer is the timer resource: every interval it reports a change, so
// that the resources that depend on it are checked (and exec ones run) again.
package timer

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("timer", func() engine.Res { return &Timer{} })
}

// The interval's bounds, in seconds: at least a millisecond, and far from
// overflowing a time.Duration (1e9 s is about 31 years).
const (
	minInterval = 0.001
	maxInterval = 1e9
)

// Timer fires every Interval seconds, counted from the first time it is
// checked or watched. A check that finds it has fired since the last one
// reports a change, which makes its children check again; the first check
// reports none (the children are checked at start anyway).
type Timer struct {
	Interval float64 `yaml:"interval"` // seconds, 0.001 to 1e9; fractions allowed

	mu    sync.Mutex // guards epoch, last
	epoch time.Time  // when the schedule started
	last  time.Time  // the latest firing time a check has reported
}

// Validate checks that the interval is a positive number of seconds.
func (t *Timer) Validate() error {
	if math.IsNaN(t.Interval) || t.Interval < minInterval || t.Interval > maxInterval {
		return fmt.Errorf("interval: %v is invalid: want seconds from %g to %g, e.g. interval: 30", t.Interval, minInterval, float64(maxInterval))
	}
	return nil
}

func (t *Timer) period() time.Duration {
	return time.Duration(t.Interval * float64(time.Second))
}

// startLocked fixes the schedule's start the first time it is needed.
func (t *Timer) startLocked(now time.Time) {
	if t.epoch.IsZero() {
		t.epoch = now
		t.last = now
	}
}

// firedLocked returns the latest scheduled firing time at or before now.
func (t *Timer) firedLocked(now time.Time) time.Time {
	p := t.period()
	n := now.Sub(t.epoch) / p
	return t.epoch.Add(n * p)
}

// Watch reports itself running, then marks its vertex dirty at every firing
// time until ctx ends.
func (t *Timer) Watch(ctx context.Context, ev engine.Events) error {
	t.mu.Lock()
	now := time.Now()
	t.startLocked(now)
	next := t.firedLocked(now).Add(t.period())
	t.mu.Unlock()

	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	ev.Running()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		ev.Dirty()
		t.mu.Lock()
		next = t.firedLocked(time.Now()).Add(t.period())
		t.mu.Unlock()
		timer.Reset(time.Until(next))
	}
}

// CheckApply reports a change when the timer has fired since the last check
// that reported one. It works the same with apply false (the timer changes
// nothing on the machine) and without Watch (meta poll).
func (t *Timer) CheckApply(ctx context.Context, apply bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.startLocked(now)
	fired := t.firedLocked(now)
	if !fired.After(t.last) {
		return false, nil
	}
	t.last = fired
	engine.Changed(ctx, engine.Change{Property: "fired", To: fired.Format(time.RFC3339Nano), Why: fmt.Sprintf("every %v", t.period())})
	return true, nil
}

// Close has nothing to release.
func (t *Timer) Close() error { return nil }
