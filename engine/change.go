package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
)

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
	// Res names the member of a group the change is about, as users write
	// it (file[/etc/motd]); empty for a resource that is not grouped. A
	// group's kind reports under ForMember, which sets it.
	Res string `json:"res,omitempty"`
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

// ForMember returns a context under which the changes reported (Changed)
// are about res, one member of a group (kind[name]): the log line and the
// report then name the member, not the group.
func ForMember(ctx context.Context, res string) context.Context {
	r, _ := ctx.Value(recorderKey{}).(Recorder)
	if r == nil {
		return ctx
	}
	return WithRecorder(ctx, memberRecorder{r, res})
}

// memberRecorder stamps the member on what it passes on.
type memberRecorder struct {
	r   Recorder
	res string
}

func (m memberRecorder) Record(c Change) {
	if c.Res == "" {
		c.Res = m.res
	}
	m.r.Record(c)
}

type watchedKey struct{}

// OnlyWatched reports whether the check running under ctx was asked for by
// the resource's own Watch alone (Events.Dirty): not by its first run, a
// parent's change, a refresh, a retry, a failure or a poll. A group may
// then check only the members whose watches fired since their last check;
// otherwise it checks them all.
func OnlyWatched(ctx context.Context) bool {
	v, _ := ctx.Value(watchedKey{}).(bool)
	return v
}

type heldKey struct{}

// HeldBack returns the members a group's check must leave out (by their
// names as users write them, kind[name]): those whose own parents are not
// in their desired state. Only a resource that is a MemberHolder is asked
// to; the engine checks the members again once those parents recover.
func HeldBack(ctx context.Context) map[string]bool {
	v, _ := ctx.Value(heldKey{}).(map[string]bool)
	return v
}

// Bounds of what the engine keeps of the changes a vertex reports: a kind
// that reports a change per file of a huge tree cannot fill the memory, the
// log or the report. What is left out is counted.
const (
	// MaxChangesPerCheck is how many changes of one check are kept.
	MaxChangesPerCheck = 200
	// MaxChangesKept is how many changes a vertex's report lists.
	MaxChangesKept = 200
)

// changeList is the Recorder of one check-and-apply.
type changeList struct {
	mu      sync.Mutex // guards cs, dropped, members
	cs      []Change
	dropped int
	// members: the group members that reported a change, all of them
	// (their changes may be dropped); a group has so many at most.
	members map[string]bool
}

func (l *changeList) Record(c Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Res != "" {
		if l.members == nil {
			l.members = map[string]bool{}
		}
		l.members[c.Res] = true
	}
	if len(l.cs) >= MaxChangesPerCheck {
		l.dropped++
		return
	}
	l.cs = append(l.cs, c)
}

// take returns what was recorded, each change masked when sensitive (the
// whole vertex, or the change itself, says so), and forgets it.
func (l *changeList) take(sensitive bool) ([]Change, int) {
	cs, dropped, _ := l.takeAll(sensitive)
	return cs, dropped
}

// takeAll is take, with the members of a group that reported a change.
func (l *changeList) takeAll(sensitive bool) ([]Change, int, map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs, dropped, members := l.cs, l.dropped, l.members
	l.cs, l.dropped, l.members = nil, 0, nil
	for i, c := range cs {
		if sensitive || c.Sensitive {
			cs[i] = Mask(c)
		}
	}
	return cs, dropped, members
}

// Mask returns c as a sensitive value is shown: its property, that it
// changed, and a short hash of the old and new value, so that one can tell
// two runs' values apart without seeing them. The diff is dropped, and so
// is the kind's explanation, which may quote the value.
func Mask(c Change) Change {
	return Change{Property: c.Property, From: ShortHash(c.From), To: ShortHash(c.To), Why: "changed", Sensitive: true, Res: c.Res}
}

// ShortHash is how a sensitive value is shown: "sha256:" and the first 12
// hex digits of its SHA-256; the empty string (no value) stays empty. A
// value that already has that form is kept: a kind may hash a secret
// itself, so that the secret is never in a Change at all (a user's
// password hash), and is then shown as the hash of the secret, not as the
// hash of its hash.
func ShortHash(s string) string {
	if s == "" || isShortHash(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func isShortHash(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 12 {
		return false
	}
	for _, c := range []byte(h) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Recording reports whether changes reported under ctx are recorded: a
// kind may skip working out a costly change (a diff) when nobody listens.
func Recording(ctx context.Context) bool {
	r, _ := ctx.Value(recorderKey{}).(Recorder)
	return r != nil
}
