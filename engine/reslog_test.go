package engine

import (
	"bytes"
	"log/slog"
	"testing"
)

// A vertex's logger writes what Logger.With("res", ...) wrote, with, after
// With and after WithGroup, masked or not.
func TestResHandlerLogsAsWith(t *testing.T) {
	v := &Vertex{Kind: "file", Name: "f1"}
	opts := &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	logs := func(mk func(h slog.Handler) *slog.Logger) string {
		var buf bytes.Buffer
		l := mk(slog.NewTextHandler(&buf, opts))
		l.Info("changed", "property", "content", "took", 3)
		l.With("stream", "stdout").Warn("line", "n", 1)
		l.WithGroup("g").Info("grouped", "k", "v")
		return buf.String()
	}
	for _, masked := range []bool{false, true} {
		wrap := func(h slog.Handler) slog.Handler {
			if masked {
				return maskHandler{h}
			}
			return h
		}
		want := logs(func(h slog.Handler) *slog.Logger { return slog.New(wrap(h)).With("res", v.String()) })
		got := logs(func(h slog.Handler) *slog.Logger { return slog.New(resHandler{wrap(h), v}) })
		if got != want {
			t.Errorf("masked=%v:\ngot\n%s\nwant\n%s", masked, got, want)
		}
	}
}

// Making a vertex's node formats nothing for its logger up front.
func TestNewNodeLoggerAllocatesLittle(t *testing.T) {
	e := New(Config{Logger: quietLog()})
	v := vtx("a-fairly-long-resource-name", &fake{})
	allocs := testing.AllocsPerRun(100, func() { e.newNode(v) })
	// node, done channel, logger, its handler: 4; With's handler copy,
	// preformatted attribute and the String() it keeps made it 12.
	if allocs > 5 {
		t.Fatalf("newNode: %v allocations, want at most 5", allocs)
	}
}
