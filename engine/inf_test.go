package engine_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	_ "github.com/mgmtconfig/mgmt/resources/noop"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// A graph with meta limit .inf, which the original accepts as unlimited,
// compiles (its identity once failed: "json: unsupported value: +Inf"),
// and runs to convergence, the .inf resource with no rate limit.
func TestLimitInfIsUnlimited(t *testing.T) {
	const src = `graph: inf
resources:
  noop:
  - name: fast
    meta:
      limit: .inf
      burst: 1
  - name: slow
    meta:
      limit: 0
`
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	yg, err := yamlgraph.Parse("inf.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	g, err := engine.Compile(context.Background(), &yg.Decl, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := engine.New(engine.Config{Logger: log, ConvergedTimeout: 0})
	if err := e.Run(ctx, g); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("did not converge")
	}
	for _, r := range e.Reports() {
		if r.Checks != 1 || r.Failed {
			t.Errorf("%s: %+v, want one successful check", r.Res, r)
		}
	}
}
