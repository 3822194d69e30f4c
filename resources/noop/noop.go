// Package noop is the noop resource: it manages nothing and is always in its
// desired state, which makes it useful as an ordering point in a graph.
package noop

import (
	"context"

	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("noop", func() engine.Res { return &Noop{} })
}

// Noop does nothing. Its only parameter is a free-text comment.
type Noop struct {
	Comment string `yaml:"comment"`
}

// Validate accepts every noop.
func (n *Noop) Validate() error { return nil }

// Watch reports itself running and waits for ctx to end: nothing can drift.
func (n *Noop) Watch(ctx context.Context, ev engine.Events) error {
	ev.Running()
	<-ctx.Done()
	return nil
}

// CheckApply never has anything to do.
func (n *Noop) CheckApply(ctx context.Context, apply bool) (bool, error) {
	return false, nil
}

// Close has nothing to release.
func (n *Noop) Close() error { return nil }
