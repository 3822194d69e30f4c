package timer

import (
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
)

// Run the way the engine runs it, a timer reports no change at start and a
// change at each firing.
func TestLoop(t *testing.T) {
	tm := &Timer{Interval: 0.05}
	if err := tm.Validate(); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex // guards results
		results []bool
	)
	changes := make(chan struct{}, 100)
	restest.Loop(t, tm, func(changed bool, err error) {
		if err != nil {
			t.Errorf("CheckApply: %v", err)
		}
		mu.Lock()
		results = append(results, changed)
		mu.Unlock()
		if changed {
			changes <- struct{}{}
		}
	})
	for i := range 3 {
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("firing %d: no change within 5s", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if results[0] {
		t.Errorf("the first check reported a change: %v", results)
	}
}
