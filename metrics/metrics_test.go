package metrics_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/metrics"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// res is a resource whose check the test decides.
type res struct {
	check func() (bool, error)
}

func (r *res) Validate() error { return nil }
func (r *res) Watch(ctx context.Context, ev engine.Events) error {
	ev.Running()
	<-ctx.Done()
	return nil
}
func (r *res) CheckApply(context.Context, bool) (bool, error) { return r.check() }
func (r *res) Close() error                                   { return nil }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// run runs the vertices until the graph is quiet, with o as the observer.
func run(t *testing.T, o engine.Observer, vs ...*engine.Vertex) error {
	t.Helper()
	g, err := engine.Compile(context.Background(), &engine.Decl{Name: "t", Vertices: vs}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = engine.New(engine.Config{Logger: quiet(), ConvergedTimeout: 0, Observer: o}).Run(ctx, g)
	if ctx.Err() != nil {
		t.Fatal("the run did not end by itself")
	}
	return err
}

func vertex(kind, name string, check func() (bool, error)) *engine.Vertex {
	return &engine.Vertex{Kind: kind, Name: name, Meta: engine.DefaultMeta(), Res: &res{check: check}}
}

// scrape fetches url and parses Prometheus' text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of the series of family name with kind (or without
// labels when kind is ""); for a histogram, its count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name, kind string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.GetMetric() {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" {
				got = l.GetValue()
			}
		}
		if got != kind {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s{kind=%q}", name, kind)
	return 0
}

// A real engine run, observed, scraped over HTTP: checks, changes and
// failures per kind, the duration histogram and the converged gauge.
func TestServeCountsOfARun(t *testing.T) {
	before := leakcheck.Take()
	srv, err := metrics.Listen("127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + srv.Addr().String() + "/metrics"

	fams := scrape(t, url)
	if v := value(t, fams, "mgmt_converged", ""); v != 0 {
		t.Fatalf("converged %v before any run", v)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Fatal("no Go runtime metrics")
	}

	// Kind "alpha": one vertex changes, one has nothing to do, one fails.
	// Kind "beta": one that waits 20 ms.
	boom := errors.New("boom")
	err = run(t, srv,
		vertex("alpha", "changes", func() (bool, error) { return true, nil }),
		vertex("alpha", "ok", func() (bool, error) { return false, nil }),
		vertex("alpha", "fails", func() (bool, error) { return false, boom }),
		vertex("beta", "slow", func() (bool, error) { time.Sleep(20 * time.Millisecond); return false, nil }),
	)
	var re *engine.RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 {
		t.Fatalf("want one failure, got %v", err)
	}
	fams = scrape(t, url)
	for _, c := range []struct {
		name, kind string
		want       float64
	}{
		{"mgmt_checks_total", "alpha", 3},
		{"mgmt_changes_total", "alpha", 1},
		{"mgmt_failures_total", "alpha", 1},
		{"mgmt_check_duration_seconds", "alpha", 3},
		{"mgmt_checks_total", "beta", 1},
		{"mgmt_changes_total", "beta", 0},
		{"mgmt_failures_total", "beta", 0},
		{"mgmt_check_duration_seconds", "beta", 1},
		{"mgmt_converged", "", 0}, // a resource failed: not converged
	} {
		if got := value(t, fams, c.name, c.kind); got != c.want {
			t.Errorf("%s{kind=%q} = %v, want %v", c.name, c.kind, got, c.want)
		}
	}
	// The slow check landed in a bucket of 20 ms or more.
	for _, m := range fams["mgmt_check_duration_seconds"].GetMetric() {
		if m.GetLabel()[0].GetValue() != "beta" {
			continue
		}
		if s := m.GetHistogram().GetSampleSum(); s < 0.02 {
			t.Errorf("beta's check took %v s in the histogram, want >= 0.02", s)
		}
	}

	// A run where everything converges sets the gauge.
	if err := run(t, srv, vertex("alpha", "fine", func() (bool, error) { return false, nil })); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, url)
	if v := value(t, fams, "mgmt_converged", ""); v != 1 {
		t.Fatalf("converged %v after a converged run, want 1", v)
	}
	if v := value(t, fams, "mgmt_checks_total", "alpha"); v != 4 {
		t.Fatalf("alpha checks %v after the second run, want 4", v)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("the server still answers after Close")
	}
	http.DefaultClient.CloseIdleConnections()
	if left := before.Left(5 * time.Second); len(left) > 0 {
		t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// Every registered kind has its series from the start, at zero.
func TestKindsStartAtZero(t *testing.T) {
	engine.Register("metricstest", func() engine.Res { return &res{} })
	m := metrics.New()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() != "mgmt_checks_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			if s.GetLabel()[0].GetValue() == "metricstest" && s.GetCounter().GetValue() == 0 {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no zero series for a registered kind")
	}
}

// Two servers have separate counts, and the global default registry is
// left alone.
func TestOwnRegistry(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.Checked("x", true, nil, time.Millisecond)
	count := func(m *metrics.Metrics) float64 {
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "mgmt_changes_total" {
				for _, s := range f.GetMetric() {
					if s.GetLabel()[0].GetValue() == "x" {
						return s.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	if count(a) != 1 || count(b) != 0 {
		t.Fatalf("changes: a %v, b %v; want 1 and 0", count(a), count(b))
	}
	fams, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "mgmt_") {
			t.Fatalf("%s is in the global default registry", f.GetName())
		}
	}
}

// A port in use is an error from Listen, not a log line later.
func TestListenPortInUse(t *testing.T) {
	a, err := metrics.Listen("127.0.0.1:0", quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if b, err := metrics.Listen(a.Addr().String(), quiet()); err == nil {
		b.Close()
		t.Fatal("a second server on the same port started")
	}
}
