// Package zapslog forwards the zap logs of etcd's server and client to a
// slog.Logger, at levels fit for an agent running at info level.
package zapslog

import (
	"context"
	"log/slog"
	"sort"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger for etcd's server or client that forwards
// entries at warn level and above to l, or discards everything if l is nil.
// etcd logs every step of its life at info level, and warns about routine
// things (a peer stream closed at shutdown, tokens not signed): its warnings
// become slog debug entries and its errors slog warnings, so that an agent
// running at info level only hears about real trouble. Once stopping (if
// not nil) is set, errors too become debug entries (a server's listeners
// closing, peers hanging up).
func New(l *slog.Logger, stopping *atomic.Bool) *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{l: l, stopping: stopping})
}

// slogCore is a zapcore.Core that writes to a slog.Logger.
type slogCore struct {
	l        *slog.Logger
	fields   []zapcore.Field
	stopping *atomic.Bool // nil: never
}

func (c *slogCore) Enabled(lvl zapcore.Level) bool { return lvl >= zapcore.WarnLevel }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	all := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	all = append(all, c.fields...)
	all = append(all, fields...)
	return &slogCore{l: c.l, fields: all, stopping: c.stopping}
}

func (c *slogCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *slogCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	if ent.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", ent.LoggerName))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	lvl := slog.LevelDebug
	if ent.Level > zapcore.WarnLevel && (c.stopping == nil || !c.stopping.Load()) {
		lvl = slog.LevelWarn
	}
	c.l.LogAttrs(context.Background(), lvl, ent.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
