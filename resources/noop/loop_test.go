package noop

import (
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/resources/restest"
)

// Run the way the engine runs it, a noop's check never has anything to do.
func TestLoop(t *testing.T) {
	n := &Noop{}
	checked := make(chan bool, 10)
	restest.Loop(t, n, func(changed bool, err error) {
		if err != nil {
			t.Errorf("CheckApply: %v", err)
		}
		checked <- changed
	})
	select {
	case changed := <-checked:
		if changed {
			t.Fatal("the first check reported a change")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no check within 5s")
	}
}
