// Package leakcheck finds the goroutines a test run left behind.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// Snapshot is the set of goroutines running at one moment, by their
// "goroutine N" header.
type Snapshot map[string]string

// Take records the goroutines running now.
func Take() Snapshot {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	s := Snapshot{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, " [")
		s[header] = g
	}
	return s
}

// Left waits up to d for the goroutines started since s to end, and
// returns the stacks of those still running, except those whose stack
// contains one of ignore (a goroutine that lives as long as the process by
// design).
func (s Snapshot) Left(d time.Duration, ignore ...string) []string {
	var left []string
	wait.Within(d, func() bool {
		left = s.since(ignore)
		return len(left) == 0
	})
	return left
}

func (s Snapshot) since(ignore []string) []string {
	var left []string
next:
	for id, stack := range Take() {
		if _, old := s[id]; old {
			continue
		}
		for _, ig := range ignore {
			if strings.Contains(stack, ig) {
				continue next
			}
		}
		left = append(left, stack)
	}
	return left
}

// Check fails the test if goroutines it started are still running d after
// it ended (after the cleanups registered later than Check, which run
// first), and prints their stacks. Call it first in the test.
func Check(tb testing.TB, d time.Duration, ignore ...string) {
	tb.Helper()
	before := Take()
	tb.Cleanup(func() {
		if left := before.Left(d, ignore...); len(left) > 0 {
			tb.Errorf("%d goroutines left running %v after the test:\n%s", len(left), d, strings.Join(left, "\n\n"))
		}
	})
}
