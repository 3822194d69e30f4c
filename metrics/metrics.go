// Package metrics counts what the engine does, per resource kind, and
// serves the counts to Prometheus on an address of its own.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is an engine.Observer that keeps its counts in a registry of its
// own (never Prometheus' global default one).
type Metrics struct {
	reg       *prometheus.Registry
	checks    *prometheus.CounterVec
	changes   *prometheus.CounterVec
	failures  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	converged prometheus.Gauge
}

var _ engine.Observer = (*Metrics)(nil)

// New returns the metrics with a zero series for every registered kind, so
// that a kind that never ran shows 0 rather than nothing. The registry also
// holds the Go runtime's and the process's metrics (go_*, process_*).
func New() *Metrics {
	kind := []string{"kind"}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mgmt_checks_total",
			Help: "Check-and-apply runs of resources, by kind.",
		}, kind),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mgmt_changes_total",
			Help: "Check-and-apply runs that changed something (applies), by kind.",
		}, kind),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mgmt_failures_total",
			Help: "Check-and-apply runs that failed, by kind.",
		}, kind),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mgmt_check_duration_seconds",
			Help: "How long one check-and-apply took, by kind.",
			// 100 µs (a noop) to 105 s (a package install), by fours.
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 11),
		}, kind),
		converged: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mgmt_converged",
			Help: "1 while every resource of the graph is in its desired state, else 0.",
		}),
	}
	m.reg.MustRegister(m.checks, m.changes, m.failures, m.duration, m.converged,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range engine.Kinds() {
		m.checks.WithLabelValues(k)
		m.changes.WithLabelValues(k)
		m.failures.WithLabelValues(k)
		m.duration.WithLabelValues(k)
	}
	return m
}

// Checked counts one check-and-apply of a resource of kind.
func (m *Metrics) Checked(kind string, changed bool, err error, took time.Duration) {
	m.checks.WithLabelValues(kind).Inc()
	m.duration.WithLabelValues(kind).Observe(took.Seconds())
	// Both series exist once a kind is seen, the one not counted at 0.
	failures, changes := m.failures.WithLabelValues(kind), m.changes.WithLabelValues(kind)
	switch {
	case err != nil:
		failures.Inc()
	case changed:
		changes.Inc()
	}
}

// Converged sets the converged gauge.
func (m *Metrics) Converged(converged bool) {
	if converged {
		m.converged.Set(1)
	} else {
		m.converged.Set(0)
	}
}

// Registry is where the metrics are kept, for tests and for serving them
// some other way.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts its own scrape errors there
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Server serves a Metrics at /metrics on one address.
type Server struct {
	*Metrics
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	log  *slog.Logger
}

// shutdownTimeout bounds how long Close waits for scrapes under way.
const shutdownTimeout = 2 * time.Second

// Listen starts serving new metrics at http://addr/metrics. The address is
// bound before it returns, so a port in use is an error here; ":0" picks a
// free port (see Addr). Close stops the server.
func Listen(addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := New()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	s := &Server{
		Metrics: m,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
		},
		ln:   ln,
		done: make(chan struct{}),
		log:  log,
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server: scrapes under way get shutdownTimeout to finish.
// It returns once the server's goroutine has ended.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

// Shutdown stops the server: scrapes under way may finish until ctx ends,
// then every connection still open is closed. It returns once the
// server's goroutine has ended, shortly after ctx at the latest.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return err
}
