package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// closeOrder is a resource whose CheckApply ignores its context until
// released, and which records whether Close came while it still ran.
type closeOrder struct {
	fake
	release  chan struct{}
	inCheck  atomic.Bool
	closedIn atomic.Bool // Close was called while CheckApply ran
	closed   chan struct{}
}

func (c *closeOrder) CheckApply(context.Context, bool) (bool, error) {
	c.inCheck.Store(true)
	defer c.inCheck.Store(false)
	<-c.release // ignores ctx on purpose
	return false, nil
}

func (c *closeOrder) Close() error {
	c.closedIn.Store(c.inCheck.Load())
	close(c.closed)
	return nil
}

// A check-and-apply abandoned after its meta timeout is awaited before the
// resource is closed, even when it outlives the run; every goroutine of the
// vertex ends once it returns.
func TestCloseAfterAbandonedCheckApply(t *testing.T) {
	before := leakcheck.Take()
	defer func(g time.Duration) { stuckGrace = g }(stuckGrace)
	stuckGrace = 10 * time.Millisecond
	r := &closeOrder{release: make(chan struct{}), closed: make(chan struct{})}
	v := vtx("hang", r)
	v.Meta.Timeout = 1
	e := New(Config{Logger: quietLog(), ConvergedTimeout: 0, StopTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx, graphOf(t, []*Vertex{v})); err == nil {
		t.Fatal("the abandoned check did not fail its vertex")
	}
	select {
	case <-r.closed:
		t.Fatal("closed while the abandoned check-and-apply still ran")
	default:
	}
	close(r.release)
	select {
	case <-r.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("not closed after the abandoned check-and-apply returned")
	}
	if r.closedIn.Load() {
		t.Fatal("Close came while CheckApply ran")
	}
	if left := before.Left(5 * time.Second); len(left) > 0 {
		t.Fatalf("goroutines left:\n%s", left)
	}
}

// A retry timer is stopped when its vertex stops: with a long delay it
// would otherwise hold the vertex until it fires.
func TestRetryTimerStoppedOnStop(t *testing.T) {
	f := &fake{check: func(context.Context, bool) (bool, error) { return false, context.Canceled }}
	v := vtx("fails", f)
	v.Meta.Retry, v.Meta.Delay = -1, MaxDelay
	e := New(Config{Logger: quietLog(), ConvergedTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, graphOf(t, []*Vertex{v})) }()
	var timer *time.Timer
	wait.For(t, 10*time.Second, "the retry timer set", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, n := range e.nodes {
			timer = n.retry
		}
		return timer != nil
	})
	cancel()
	<-done
	if timer.Stop() {
		t.Fatal("the retry timer was still armed after the run")
	}
}
