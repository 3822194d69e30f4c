package leakcheck

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLeftFindsALeakAndIgnores(t *testing.T) {
	before := Take()
	stop := make(chan struct{})
	go parkedForTest(stop)
	left := before.Left(50 * time.Millisecond)
	if len(left) != 1 || !strings.Contains(left[0], "parkedForTest") {
		t.Fatalf("want the one parked goroutine, got %d: %v", len(left), left)
	}
	if left := before.Left(10*time.Millisecond, "parkedForTest"); len(left) != 0 {
		t.Fatalf("ignored goroutine reported: %v", left)
	}
	close(stop)
	if left := before.Left(5 * time.Second); len(left) != 0 {
		t.Fatalf("a goroutine that ended is still reported: %v", left)
	}
}

func parkedForTest(stop chan struct{}) { <-stop }

// fakeTB runs Check's cleanup on demand and records Errorf.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	f := &fakeTB{}
	Check(f, 20*time.Millisecond)
	stop := make(chan struct{})
	go parkedForTest(stop)
	f.cleanups[0]()
	if len(f.errs) != 1 || !strings.Contains(f.errs[0], "parkedForTest") {
		t.Errorf("a leaked goroutine: errors %q, want one with its stack", f.errs)
	}
	close(stop)

	f = &fakeTB{}
	Check(f, 5*time.Second)
	done := make(chan struct{})
	go func() { <-time.After(10 * time.Millisecond); close(done) }()
	f.cleanups[0]()
	<-done
	if len(f.errs) != 0 {
		t.Errorf("a goroutine that ended within the wait was reported: %q", f.errs)
	}
}
