package engine

// nodeResult is what one vertex did, for the run's summary.
type nodeResult struct {
	Res   string
	Stats Stats
	Err   error
}

func (n *node) resultLocked() nodeResult {
	return nodeResult{Res: n.v.String(), Stats: n.stats, Err: n.lastErr}
}
