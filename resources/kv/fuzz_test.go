package kv

import (
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
)

// With -fuzz, the coordinator starts the os/signal goroutine after
// TestMain has taken its leak snapshot: start it first.
func init() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	signal.Stop(c)
}

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts is usable: a key within bounds, a value within bounds, a number
// when skiplessthan compares numbers; decide is then idempotent (once the
// key holds what it says to write, it has nothing more to do) and never
// lowers a stored value under skiplessthan.
func FuzzValidate(f *testing.F) {
	f.Add("hello", "world", true, false, false, 0, "moon", true)
	f.Add("stage", "3", true, false, true, 0, "10", true)
	f.Add("stage", "9", true, true, true, 1, "10", true)
	f.Add("", "x", true, false, false, 0, "", false)
	f.Add("k", "three", true, false, true, 0, "x", true)
	f.Add("k", "", false, false, false, 7, "x", true)
	f.Fuzz(func(t *testing.T, key, value string, hasValue, mapped, skip bool, style int, old string, hasOld bool) {
		r := &KV{Key: key, Mapped: mapped, SkipLessThan: skip, SkipCmpStyle: style}
		if hasValue {
			r.Value = &value
		}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		switch {
		case key == "" || len(key) > MaxKey:
			t.Fatalf("accepted key of %d bytes", len(key))
		case hasValue && len(value) > MaxValue:
			t.Fatalf("accepted value of %d bytes", len(value))
		case style != CmpInt && style != CmpString:
			t.Fatalf("accepted skipcmpstyle %d", style)
		}
		if skip && style == CmpInt && hasValue {
			if _, err := strconv.ParseInt(value, 10, 64); err != nil {
				t.Fatalf("accepted %q to compare as a number", value)
			}
		}
		var o *string
		if hasOld {
			o = &old
		}
		c := r.decide(o, false)
		if c == nil {
			return
		}
		if c.Property == "" || c.Why == "" {
			t.Fatalf("change %+v says nothing", c)
		}
		if c2 := r.decide(r.Value, false); c2 != nil {
			t.Fatalf("after writing %v, decide wants %+v: not idempotent", r.Value, c2)
		}
		if skip && hasValue && hasOld && style == CmpInt {
			s, err := strconv.ParseInt(old, 10, 64)
			w, _ := strconv.ParseInt(value, 10, 64)
			if err == nil && w < s {
				t.Fatalf("skiplessthan: %d would be written over %d", w, s)
			}
		}
	})
}
