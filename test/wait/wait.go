// Package wait polls a test's condition until it holds, and fails the test
// if it does not within a deadline.
package wait

import (
	"testing"
	"time"
)

// Poll intervals: the first checks come quickly (most conditions hold
// within milliseconds), later ones back off so that a condition that runs
// a command (in a test host, say) does not load the machine.
const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// For waits up to d for cond to return true and fails the test (Fatal)
// otherwise, saying it timed out waiting for what.
func For(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	Until(tb, d, cond, func() string { return "timed out after " + d.String() + " waiting for " + what })
}

// Until is For with the failure message built when the wait fails, from
// the state then (the last output, the state that was reached instead).
func Until(tb testing.TB, d time.Duration, cond func() bool, msg func() string) {
	tb.Helper()
	if !Within(d, cond) {
		tb.Fatal(msg())
	}
}

// Within waits up to d for cond to return true and reports whether it did:
// for a wait whose timeout is not a failure, or not of the calling test.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for step := firstPoll; ; step = min(2*step, maxPoll) {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(step, left))
	}
}
