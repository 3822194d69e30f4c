// Command mgmt-etcd runs one embedded etcd member for a mgmt agent, as its
// child process: a build of mgmt with the mgmt_split_server tag carries this
// program instead of linking etcd's server (see docs/cluster.md).
//
// It reads its configuration (memberconf.Config) as JSON on stdin, writes
// one line of JSON (memberconf.Ready) on stdout once ready or failed, logs
// as JSON lines on stderr, and stops when stdin closes, at SIGTERM or
// SIGINT, or when the member stops by itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mgmtconfig/mgmt/etcd/member"
	"github.com/mgmtconfig/mgmt/etcd/memberconf"
)

func main() { os.Exit(run()) }

func run() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	out := json.NewEncoder(os.Stdout)
	dec := json.NewDecoder(os.Stdin)
	var cfg memberconf.Config
	if err := dec.Decode(&cfg); err != nil {
		out.Encode(memberconf.Ready{Error: fmt.Sprintf("mgmt-etcd: read configuration from stdin: %v", err)})
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The parent closing stdin (or dying) stops the member. This goroutine
	// stays blocked in read(2) until the process exits: stdin is a blocking
	// pipe, which no Close would wake.
	go func() {
		io.Copy(io.Discard, io.MultiReader(dec.Buffered(), os.Stdin))
		stop()
	}()

	s, err := member.Start(ctx, cfg, log)
	if err != nil {
		r := memberconf.Ready{Error: err.Error()}
		switch {
		case errors.Is(err, member.ErrNotReady):
			r.Kind = memberconf.KindNotReady
		case errors.Is(err, syscall.EADDRINUSE):
			r.Kind = memberconf.KindAddrInUse
		}
		out.Encode(r)
		return 1
	}
	out.Encode(memberconf.Ready{Endpoints: s.Endpoints()})
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	s.Stop()
	return 0
}
