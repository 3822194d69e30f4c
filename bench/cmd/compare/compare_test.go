package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recorder makes tools that record the order of their trials.
type recorder struct{ order []string }

func (r *recorder) tool(name string, val float64) *tool {
	return &tool{name: name, trial: func(context.Context) ([][]float64, error) {
		r.order = append(r.order, name)
		return [][]float64{{val}}, nil
	}}
}

func TestRunAlternates(t *testing.T) {
	var rec recorder
	s := &scenario{
		title:   "s",
		metrics: []metric{{name: "m", unit: "s"}},
		runs:    3,
		warmup:  true,
		tools:   []*tool{rec.tool("a", 1), rec.tool("b", 2), rec.tool("c", 4)},
	}
	s.tools[0].ref = true
	s.run(context.Background(), quietLog())
	want := "a b c  a b c  b c a  c a b"
	if got := strings.Join(rec.order[:3], " ") + "  " + strings.Join(rec.order[3:6], " ") + "  " +
		strings.Join(rec.order[6:9], " ") + "  " + strings.Join(rec.order[9:], " "); got != want {
		t.Errorf("order (warm-up, then rounds) = %s, want %s", got, want)
	}
	for _, tl := range s.tools {
		if tl.runs != 3 || len(tl.samples[0]) != 3 {
			t.Errorf("%s: %d runs, %d samples; want 3 (the warm-up is not kept)", tl.name, tl.runs, len(tl.samples[0]))
		}
	}
	rows := s.rows()
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	for i, want := range []string{"1", "0.5", "0.25"} {
		if rows[i].ratio != want {
			t.Errorf("row %s: ratio %q, want %q", rows[i].tool.name, rows[i].ratio, want)
		}
	}
}

func TestRunBudgetAndFailures(t *testing.T) {
	var rec recorder
	slow := rec.tool("slow", 1)
	calls := 0
	flaky := &tool{name: "flaky", trial: func(context.Context) ([][]float64, error) {
		calls++
		if calls == 2 {
			return nil, errors.New("boom")
		}
		return [][]float64{{1}}, nil
	}}
	broken := &tool{name: "broken", trial: func(context.Context) ([][]float64, error) { return nil, errors.New("never works") }}
	pending := &tool{name: "pending", pending: "not yet"}
	skipped := &tool{name: "skipped", notRun: "not installed"}
	s := &scenario{
		title:   "s",
		metrics: []metric{{name: "m", unit: "s"}},
		runs:    4,
		budget:  time.Nanosecond, // any trial spends more
		minRuns: 2,
		tools:   []*tool{slow, flaky, broken, pending, skipped},
	}
	s.run(context.Background(), quietLog())
	if slow.runs != 2 {
		t.Errorf("slow ran %d times, want minRuns = 2 before its budget stops it", slow.runs)
	}
	if flaky.runs != 1 || calls != 2 {
		t.Errorf("flaky: %d runs kept, %d calls; want 1 and 2 (no run after a failure)", flaky.runs, calls)
	}
	notes := map[string]string{}
	for _, r := range s.rows() {
		notes[r.tool.name] = r.note
	}
	for name, want := range map[string]string{
		"flaky":   "stopped after a failure: boom",
		"broken":  "failed: never works",
		"pending": "pending: not yet",
		"skipped": "not installed",
	} {
		if notes[name] != want {
			t.Errorf("%s: note %q, want %q", name, notes[name], want)
		}
	}
}

func TestRowsOnlyAndNaN(t *testing.T) {
	s := &scenario{
		title:   "s",
		metrics: []metric{{name: "install", unit: "s"}, {name: "check", unit: "s"}},
		runs:    1,
		tools: []*tool{
			{name: "both", ref: true, trial: func(context.Context) ([][]float64, error) { return [][]float64{{2}, {1}}, nil }},
			{name: "check only", trial: func(context.Context) ([][]float64, error) { return [][]float64{{math.NaN()}, {0.5}}, nil }},
			{name: "pending first", only: []int{0}, pending: "later"},
		},
	}
	s.run(context.Background(), quietLog())
	var got []string
	for _, r := range s.rows() {
		got = append(got, r.metric.name+"/"+r.tool.name)
	}
	if want := "install/both install/pending first check/both check/check only"; strings.Join(got, " ") != want {
		t.Errorf("rows %v, want %s", got, want)
	}
}

func TestFmtVal(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		unit string
		want string
	}{
		{0.0000123, "s", "12.3 µs"},
		{0.01234, "s", "12.3 ms"},
		{1.5, "s", "1.5 s"},
		{123.4, "s", "123 s"},
		{45.67, "MB", "45.7 MB"},
	} {
		if got := fmtVal(tt.v, tt.unit); got != tt.want {
			t.Errorf("fmtVal(%v, %s) = %s, want %s", tt.v, tt.unit, got, tt.want)
		}
	}
}

func TestDpkgStatusInstalled(t *testing.T) {
	status := []byte("Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: deinstall ok config-files\n\n" +
		"Package: ab\nStatus: install ok installed\n")
	for pkg, want := range map[string]bool{"a": true, "b": false, "ab": true, "c": false} {
		if got := dpkgStatusInstalled(status, pkg); got != want {
			t.Errorf("%s: %v, want %v", pkg, got, want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	if got, want := shellJoin([]string{"-quick", "-made-by", "make bench", "it's"}), `-quick -made-by 'make bench' 'it'\''s'`; got != want {
		t.Errorf("shellJoin = %s, want %s", got, want)
	}
}

func TestTimeCommand(t *testing.T) {
	r, err := timeCommand(context.Background(), []string{"PATH=" + basePath}, []string{"sh", "-c", "echo out; echo err >&2; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 3 || !strings.Contains(string(r.out), "out") || !strings.Contains(string(r.out), "err") || r.maxRSS <= 0 || r.elapsed <= 0 {
		t.Errorf("result %+v", r)
	}
	var ce *cmdError
	if err := r.ok(0); !errors.As(err, &ce) || ce.Code != 3 {
		t.Errorf("ok(0) = %v, want a *cmdError with code 3", err)
	}
	if err := r.ok(0, 3); err != nil {
		t.Errorf("ok(0, 3) = %v", err)
	}
	if _, err := timeCommand(context.Background(), nil, []string{"/nonexistent/program"}); err == nil {
		t.Error("starting a missing program is not an error")
	}
}
