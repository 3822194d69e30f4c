// Package agent runs a graph file: it loads and compiles it, runs it on the
// engine, and swaps in each new valid version when the file changes.
package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/pgraph"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// Config is what `mgmt run` asks for.
type Config struct {
	File     string
	Hostname string
	Prefix   string
	Noop     bool
	// ConvergedTimeout: exit once converged this long; negative: never.
	ConvergedTimeout time.Duration
	// Watch reloads the graph when File changes.
	Watch bool
	// Graphviz, when set, receives the compiled graph as DOT each time one
	// is built; with GraphvizFilter "dot" it is also rendered to Graphviz+".png".
	Graphviz       string
	GraphvizFilter string
	Logger         *slog.Logger
}

// InvalidError is a graph that was refused: nothing of it was applied.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Load parses and compiles a graph file. Any problem is an *InvalidError.
func Load(ctx context.Context, file string, log *slog.Logger) (*yamlgraph.Graph, *pgraph.Graph, error) {
	yg, err := yamlgraph.ParseFile(file)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	g, err := engine.Compile(ctx, &yg.Decl, log)
	if err != nil {
		return nil, nil, &InvalidError{err}
	}
	return yg, g, nil
}

// Run loads cfg.File and runs it until ctx ends or the converged timeout
// passes. It returns an *InvalidError when the first load fails (nothing
// applied) and an *engine.RunError when resources failed.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if abs, err := filepath.Abs(cfg.File); err == nil {
		cfg.File = abs
	}
	_, g, err := Load(ctx, cfg.File, log)
	if err != nil {
		return err
	}
	writeGraphviz(cfg, g, log)
	eng := engine.New(engine.Config{
		Hostname: cfg.Hostname, Prefix: cfg.Prefix, Logger: log,
		Noop: cfg.Noop, ConvergedTimeout: cfg.ConvergedTimeout,
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Watch {
		stop, err := watchFile(ctx, cfg, eng, log)
		if err != nil {
			log.Warn("graph file not watched: changes need a restart", "file", cfg.File, "err", err)
		} else {
			defer stop()
		}
	}
	return eng.Run(ctx, g)
}

// watchFile reloads the graph whenever its file changes. An invalid new
// version is logged and the running graph kept.
func watchFile(ctx context.Context, cfg Config, eng *engine.Engine, log *slog.Logger) (func(), error) {
	w, err := fswatch.Default()
	if err != nil {
		return nil, err
	}
	changed := make(chan struct{}, 1)
	cancel, err := w.Watch(cfg.File, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	last, _ := os.ReadFile(cfg.File)
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			data, err := os.ReadFile(cfg.File)
			if err != nil || bytes.Equal(data, last) {
				continue // gone for a moment (an editor's rename), or no change
			}
			last = data
			_, g, err := Load(ctx, cfg.File, log)
			if err != nil {
				log.Error("graph file changed but is invalid: still running the previous graph", "file", cfg.File, "err", err)
				continue
			}
			log.Info("graph file changed: swapping graphs", "file", cfg.File)
			writeGraphviz(cfg, g, log)
			eng.Swap(g)
		}
	}()
	return func() { cancel(); stop(); <-done }, nil
}

func writeGraphviz(cfg Config, g *pgraph.Graph, log *slog.Logger) {
	if cfg.Graphviz == "" {
		return
	}
	var buf bytes.Buffer
	if err := g.WriteDOT(&buf); err != nil {
		log.Warn("graphviz", "err", err)
		return
	}
	if err := os.WriteFile(cfg.Graphviz, buf.Bytes(), 0o644); err != nil {
		log.Warn("graphviz: write", "err", err)
		return
	}
	if cfg.GraphvizFilter == "" {
		return
	}
	out := cfg.Graphviz + ".png"
	cmd := exec.Command(cfg.GraphvizFilter, "-Tpng", "-o", out, cfg.Graphviz)
	if msg, err := cmd.CombinedOutput(); err != nil {
		log.Warn("graphviz: render", "filter", cfg.GraphvizFilter, "err", fmt.Errorf("%w: %s", err, bytes.TrimSpace(msg)))
	}
}
