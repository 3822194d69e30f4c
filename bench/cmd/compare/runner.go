package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/mgmtconfig/mgmt/bench/stats"
)

// metric is one number a trial measures.
type metric struct {
	name    string // e.g. "first apply"
	unit    string // "s" or "MB"
	latency bool   // many samples per trial: report the 99th percentile too
}

// tool is one column of a scenario: mgmt, a peer, or a floor.
type tool struct {
	name string
	// pending, when set, means the tool is not run yet; it is said in the
	// row as "pending: ...".
	pending string
	// notRun, when set, means the tool is not run; the row says why as is.
	notRun string
	ref    bool // mgmt's row that the others are compared with
	// only lists the metrics (by index) the tool has rows for; nil: all.
	only []int
	note string // how it was run, when the scenario's text does not say
	// setup runs once before the first trial (untimed); an error makes
	// the tool's rows say so.
	setup func(ctx context.Context) error
	// reset runs before each trial (untimed).
	reset func(ctx context.Context) error
	// trial measures once: values[i] for metric i (NaN: not applicable),
	// or, for latency metrics, any number of samples.
	trial func(ctx context.Context) ([][]float64, error)

	samples [][]float64
	runs    int
	spent   time.Duration
	err     error
}

// scenario is a set of tools doing the same work, run in alternation.
type scenario struct {
	id      string
	title   string
	metrics []metric
	tools   []*tool
	runs    int
	// warmup runs one untimed trial of every tool first, so that every
	// tool starts with warm caches.
	warmup bool
	// budget: once a tool has minRuns trials and has spent this long,
	// it is not run again (the row says how many runs it had).
	budget  time.Duration
	minRuns int
	// trialTimeout bounds one trial.
	trialTimeout time.Duration
	notes        []string
	// teardown runs after the last trial.
	teardown func()
}

// run runs the scenario: optional warm-up, then rounds in which every tool
// has one trial, the order rotating from round to round.
func (s *scenario) run(ctx context.Context, log *slog.Logger) {
	if s.teardown != nil {
		defer s.teardown()
	}
	if s.trialTimeout == 0 {
		s.trialTimeout = 10 * time.Minute
	}
	if s.minRuns == 0 {
		s.minRuns = 1
	}
	var active []*tool
	for _, t := range s.tools {
		t.samples = make([][]float64, len(s.metrics))
		if t.pending != "" || t.notRun != "" {
			continue
		}
		if t.setup != nil {
			if err := t.setup(ctx); err != nil {
				t.err = fmt.Errorf("setup: %w", err)
				log.Warn("tool setup failed", "scenario", s.id, "tool", t.name, "err", err)
				continue
			}
		}
		active = append(active, t)
	}
	one := func(t *tool, keep bool) {
		if t.reset != nil {
			if err := t.reset(ctx); err != nil {
				t.err = fmt.Errorf("reset: %w", err)
				return
			}
		}
		tctx, cancel := context.WithTimeout(ctx, s.trialTimeout)
		defer cancel()
		start := time.Now()
		vals, err := t.trial(tctx)
		t.spent += time.Since(start)
		if err != nil {
			t.err = err
			log.Warn("trial failed", "scenario", s.id, "tool", t.name, "err", err)
			return
		}
		if !keep {
			return
		}
		t.runs++
		for i := range s.metrics {
			if i < len(vals) {
				for _, v := range vals[i] {
					if !math.IsNaN(v) {
						t.samples[i] = append(t.samples[i], v)
					}
				}
			}
		}
	}
	if s.warmup {
		for _, t := range active {
			if ctx.Err() == nil && t.err == nil {
				log.Info("warm-up", "scenario", s.id, "tool", t.name)
				one(t, false)
			}
		}
	}
	for r := 0; r < s.runs && ctx.Err() == nil; r++ {
		for k := range active {
			t := active[(k+r)%len(active)]
			if t.err != nil || ctx.Err() != nil {
				continue
			}
			if t.runs >= s.minRuns && s.budget > 0 && t.spent > s.budget {
				continue
			}
			log.Info("run", "scenario", s.id, "round", r+1, "of", s.runs, "tool", t.name)
			one(t, true)
		}
	}
}

// row is one line of the results table.
type row struct {
	scenario string
	metric   metric
	tool     *tool
	sum      stats.Summary
	ok       bool
	ratio    string
	note     string
}

// rows turns the scenario's results into table rows: every metric, every
// tool, with the ratio of mgmt's median to each tool's.
func (s *scenario) rows() []row {
	var out []row
	for i, m := range s.metrics {
		var ref *stats.Summary
		for _, t := range s.tools {
			if t.ref {
				if sum, ok := stats.Summarize(t.samples[i]); ok {
					ref = &sum
				}
			}
		}
		for _, t := range s.tools {
			if t.only != nil && !slices.Contains(t.only, i) {
				continue
			}
			r := row{scenario: s.title, metric: m, tool: t}
			r.sum, r.ok = stats.Summarize(t.samples[i])
			switch {
			case t.pending != "":
				r.note = "pending: " + t.pending
			case t.notRun != "":
				r.note = t.notRun
			case t.err != nil && !r.ok:
				r.note = "failed: " + t.err.Error()
			case t.err != nil:
				r.note = "stopped after a failure: " + t.err.Error()
			case !r.ok:
				continue // not applicable to this tool
			}
			if r.ok && ref != nil && m.unit == "s" && r.sum.Median > 0 {
				if t.ref {
					r.ratio = "1"
				} else {
					r.ratio = fmt.Sprintf("%.2g", ref.Median/r.sum.Median)
				}
			}
			if r.note == "" {
				r.note = t.note
			} else if t.note != "" {
				r.note += "; " + t.note
			}
			out = append(out, r)
		}
	}
	return out
}
