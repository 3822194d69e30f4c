package stats

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64
		want    Summary
	}{
		{"one", []float64{3}, Summary{N: 1, Median: 3, Min: 3, Max: 3, Q1: 3, Q3: 3, P99: 3}},
		{"odd, unsorted", []float64{5, 1, 3}, Summary{N: 3, Median: 3, Min: 1, Max: 5, Q1: 2, Q3: 4, P99: 4.96}},
		{"even", []float64{4, 1, 2, 3}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4, Q1: 1.75, Q3: 3.25, P99: 3.97}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Summarize(tt.samples)
			if !ok {
				t.Fatal("not ok")
			}
			if got.N != tt.want.N || !near(got.Median, tt.want.Median) || !near(got.Min, tt.want.Min) ||
				!near(got.Max, tt.want.Max) || !near(got.Q1, tt.want.Q1) || !near(got.Q3, tt.want.Q3) || !near(got.P99, tt.want.P99) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.samples, got, tt.want)
			}
		})
	}
}

func TestSummarizeKeepsInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 || in[1] != 1 || in[2] != 2 {
		t.Errorf("input reordered: %v", in)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	if _, ok := Summarize(nil); ok {
		t.Error("Summarize(nil) is ok")
	}
}

func TestQuantileOf100(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	if got := Quantile(v, 0.99); !near(got, 99.01) {
		t.Errorf("p99 of 1..100 = %v, want 99.01", got)
	}
	if got := Quantile(v, 1); got != 100 {
		t.Errorf("p100 = %v", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
