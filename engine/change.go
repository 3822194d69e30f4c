package engine

import "context"

// Change is one property of a resource that differs from what the graph
// wants, as CheckApply found it: the shared, structured form in which every
// kind reports what it changed (or, in noop, would change) and why.
type Change struct {
	// Property names what differs: "content", "mode", "state", "uid"...
	Property string `json:"property"`
	// From and To are the current and the wanted value, rendered for a
	// person; empty when they mean nothing (a command to run).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Diff is a unified diff of From and To for text content, bounded in
	// size by the kind; empty when there is none.
	Diff string `json:"diff,omitempty"`
	// Why says why it differs or must run ("creates /x is missing",
	// "refreshed by exec[a]").
	Why string `json:"why,omitempty"`
	// Sensitive marks a value that must never be shown (a password hash):
	// only that it changed, with a hash, is reported.
	Sensitive bool `json:"sensitive,omitempty"`
}

// Recorder receives the changes one CheckApply reports.
type Recorder interface {
	Record(Change)
}

type recorderKey struct{}

// WithRecorder returns a context whose CheckApply calls report to r.
func WithRecorder(ctx context.Context, r Recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// Changed reports changes found by a CheckApply running under ctx. Kinds
// call it once per differing property, in noop and in real runs alike; it is
// a no-op when nobody records (a unit test calling CheckApply directly).
func Changed(ctx context.Context, cs ...Change) {
	r, _ := ctx.Value(recorderKey{}).(Recorder)
	if r == nil {
		return
	}
	for _, c := range cs {
		r.Record(c)
	}
}
