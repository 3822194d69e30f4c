package wait

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWithin(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	if !Within(5*time.Second, func() bool { return n.Add(1) == 5 }) {
		t.Fatal("a condition true on the 5th check was not seen")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("5 checks took %v", d)
	}
	start = time.Now()
	if Within(100*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition never true was reported true")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Errorf("a 100ms wait took %v", d)
	}
	// The condition is checked once more at the deadline.
	if !Within(0, func() bool { return true }) {
		t.Error("a condition true at once was not seen with no time to wait")
	}
}

// fakeTB records Fatal instead of ending the test.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Fatal(args ...any) { f.fatal = fmt.Sprint(args...) }

func TestForFails(t *testing.T) {
	f := &fakeTB{}
	For(f, 20*time.Millisecond, "the file", func() bool { return false })
	if !strings.Contains(f.fatal, "waiting for the file") || !strings.Contains(f.fatal, "20ms") {
		t.Errorf("failure %q does not say what and how long", f.fatal)
	}
	f = &fakeTB{}
	Until(f, 20*time.Millisecond, func() bool { return false }, func() string { return "state: stuck" })
	if f.fatal != "state: stuck" {
		t.Errorf("failure %q, want the message built at the deadline", f.fatal)
	}
	f = &fakeTB{}
	For(f, time.Second, "nothing", func() bool { return true })
	if f.fatal != "" {
		t.Errorf("a condition that held failed the test: %q", f.fatal)
	}
}
