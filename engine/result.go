package engine

import (
	"sort"
	"time"
)

// Report is what one resource did during a run.
type Report struct {
	Res      string        `json:"res"`
	Kind     string        `json:"kind"`
	Changed  bool          `json:"changed"`
	Failed   bool          `json:"failed"`
	Error    string        `json:"error,omitempty"`
	Checks   int           `json:"checks"`
	Changes  int           `json:"changes"`
	Failures int           `json:"failures"`
	Duration time.Duration `json:"duration_ns"`
	Removed  bool          `json:"removed,omitempty"` // left the graph during the run
}

func (n *node) reportLocked() Report {
	r := Report{
		Res: n.v.String(), Kind: n.v.Kind, Changed: n.stats.Changes > 0,
		Checks: n.stats.Checks, Changes: n.stats.Changes, Failures: n.stats.Failures,
		Duration: n.stats.Duration,
	}
	if n.st == stateFailed && n.lastErr != nil {
		r.Failed, r.Error = true, n.lastErr.Error()
	}
	return r
}

// Reports lists what every resource did, sorted by name: those in the graph
// and those removed by a reload. Call it after Run has returned.
func (e *Engine) Reports() []Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]Report(nil), e.gone...)
	for _, n := range e.order {
		out = append(out, n.reportLocked())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Res < out[j].Res })
	return out
}
