package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/deploy"
	"github.com/mgmtconfig/mgmt/engine"
)

// A host's status counts the resources held back by a failed one: here a
// file whose directory's path is taken by a regular file fails, and holds
// back a file of another directory and a command after that.
func TestHostStatusCountsHeld(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "blocker"), "a regular file\n")
	file := filepath.Join(dir, "g.yaml")
	writeFile(t, file, heldGraph(t, dir))
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, g, err := Load(ctx, file, log)
	if err != nil {
		t.Fatal(err)
	}
	h := newHostStatus(nil, "test")
	e := engine.New(engine.Config{Logger: log, ConvergedTimeout: 0, Observer: h})
	h.setEngine(e)
	if err := e.Run(ctx, g); err == nil || ctx.Err() != nil {
		t.Fatalf("run: %v (context: %v), want file[inner]'s failure", err, ctx.Err())
	}
	s := h.snapshot()
	if s.State != deploy.StateFailed || len(s.Failed) != 1 || s.Failed[0].Res != "file[inner]" || s.Held != 2 {
		t.Fatalf("status %+v: want failed, file[inner] failed, 2 held (file[a], exec[after-a])", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub/b")); err != nil {
		t.Errorf("file[b], which waits on nothing, not written: %v", err)
	}
}

// heldGraph is testdata/held-by-failed-file.yaml, a failed file that holds
// back a file and a command, for files in dir (cmd/mgmt's held_test.go
// runs the same graph through mgmt run).
func heldGraph(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/held-by-failed-file.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "$DIR", dir)
}
