package engine

import (
	"context"
	"errors"
	"log/slog"
)

// The log attributes of a sensitive vertex's kind that are shown as they
// are: they say what a record is about or how long it took, never a value
// the resource manages. Every other attribute's value is replaced by its
// ShortHash.
var plainAttrs = map[string]bool{
	"res": true, "path": true, "unit": true, "took": true, "duration": true,
	"stream": true, "status": true, "lines": true, "not_logged": true,
	"retries_left": true, "delay_ms": true, "waited": true, "timeout": true,
}

// maskHandler is the log handler a sensitive vertex's kind logs through:
// no kind can leak a value into the log, whatever it logs.
type maskHandler struct{ h slog.Handler }

func (m maskHandler) Enabled(ctx context.Context, l slog.Level) bool { return m.h.Enabled(ctx, l) }

func (m maskHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(maskAttr(a))
		return true
	})
	return m.h.Handle(ctx, nr)
}

func (m maskHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = maskAttr(a)
	}
	return maskHandler{m.h.WithAttrs(out)}
}

func (m maskHandler) WithGroup(name string) slog.Handler { return maskHandler{m.h.WithGroup(name)} }

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := v.Group()
		out := make([]any, len(g))
		for i, x := range g {
			out[i] = maskAttr(x)
		}
		return slog.Group(a.Key, out...)
	}
	if plainAttrs[a.Key] {
		return a
	}
	return slog.String(a.Key, ShortHash(v.String()))
}

// SensitiveError is the error of a sensitive vertex as logs and reports
// show it: what failed is withheld (an exec's error quotes its command and
// stderr), a hash tells two errors apart. Unwrap gives the real error to
// errors.Is and errors.As.
type SensitiveError struct{ Err error }

func (e *SensitiveError) Error() string {
	return "error withheld: the resource is sensitive (" + ShortHash(e.Err.Error()) + ")"
}

func (e *SensitiveError) Unwrap() error { return e.Err }

// maskErr wraps err of a sensitive vertex, once.
func maskErr(sensitive bool, err error) error {
	var se *SensitiveError
	if !sensitive || err == nil || errors.As(err, &se) {
		return err
	}
	return &SensitiveError{Err: err}
}
