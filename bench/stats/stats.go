// Package stats summarizes repeated measurements: median, spread and
// percentiles, the way the benchmark tables report them.
package stats

import (
	"math"
	"slices"
)

// Summary describes a set of samples.
type Summary struct {
	N      int
	Median float64
	Min    float64
	Max    float64
	Q1, Q3 float64 // the quartiles
	P99    float64 // the 99th percentile
}

// Summarize returns the summary of samples; ok is false when there are
// none.
func Summarize(samples []float64) (s Summary, ok bool) {
	if len(samples) == 0 {
		return Summary{}, false
	}
	v := slices.Clone(samples)
	slices.Sort(v)
	return Summary{
		N:      len(v),
		Median: Quantile(v, 0.5),
		Min:    v[0],
		Max:    v[len(v)-1],
		Q1:     Quantile(v, 0.25),
		Q3:     Quantile(v, 0.75),
		P99:    Quantile(v, 0.99),
	}, true
}

// Quantile returns the q-quantile (0 <= q <= 1) of sorted, interpolating
// linearly between the closest ranks (the method of R's default type 7, and
// of numpy). sorted must be sorted and not empty.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 1 {
		return sorted[0]
	}
	h := q * float64(len(sorted)-1)
	lo := math.Floor(h)
	i := int(lo)
	if i >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-lo)*(sorted[i+1]-sorted[i])
}
