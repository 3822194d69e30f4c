package engine

import "sort"

// State is what the engine is doing at one moment, for a host's status.
type State struct {
	// Quiet: nothing is under way; every vertex is converged, or failed
	// for good, or waits on one that did.
	Quiet bool
	// Converged: quiet with every vertex in its desired state.
	Converged bool
	// Failures are the vertices whose last check failed (given up, or
	// waiting for a retry), sorted by resource.
	Failures []Failure
	// Held counts the resources (a group's members each) not in their
	// desired state that wait on a failed one, as the run's report says
	// (Report.Held).
	Held int
}

// State returns the engine's state now, computed afresh (not as the
// tracker last saw it: a graph swapped in a moment ago is not quiet). It
// is safe to call at any time; every change of Quiet is also told to the
// Observer (Converged), after it happened.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	quiet := e.quietLocked()
	s := State{Quiet: quiet, Converged: quiet && e.converged == len(e.nodes)}
	for _, n := range e.order {
		if n.st == stateFailed && n.lastErr != nil {
			s.Failures = append(s.Failures, Failure{Res: n.v.String(), Err: n.lastErr})
		}
	}
	if len(s.Failures) > 0 { // else nothing is held
		s.Held = e.heldCountLocked()
	}
	sort.Slice(s.Failures, func(i, j int) bool { return s.Failures[i].Res < s.Failures[j].Res })
	return s
}
