package etcd

import (
	"log/slog"

	"go.uber.org/zap"

	"github.com/mgmtconfig/mgmt/etcd/zapslog"
)

// zapLogger returns a zap logger for etcd's client that forwards its
// warnings and errors to l (see zapslog.New), or discards them if l is nil.
func zapLogger(l *slog.Logger) *zap.Logger { return zapslog.New(l, nil) }
