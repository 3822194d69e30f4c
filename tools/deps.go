//go:build tools

// Package tools pins the project's dependencies before every package that
// uses them exists, so that go.mod stays stable while work goes on in parallel.
package tools

import (
	_ "github.com/coreos/go-systemd/v22/dbus"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/godbus/dbus/v5"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sys/unix"
	_ "gonum.org/v1/gonum/graph/topo"
)
