package leakcheck

import (
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
