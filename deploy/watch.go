package deploy

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch delivers the number of the deploy host should run: its target when
// it has one, else current. The first value is what a first read finds
// (nothing until there is a deploy); later ones follow every change from
// that read's revision on. The channel holds only the newest number: a
// slow reader misses none but the ones already replaced. It is closed once
// ctx ends; read it to its end to join the goroutine behind it. Errors
// (an unreachable cluster, a compacted revision) are retried.
func (s *Store) Watch(ctx context.Context, host string) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		defer close(out)
		w := &watcher{s: s, host: host, out: out}
		for ctx.Err() == nil {
			rev, err := w.read(ctx)
			if err == nil {
				w.follow(ctx, rev+1)
			}
			select { // a pause before reading again, so that a dead cluster is not hammered
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return out
}

type watcher struct {
	s               *Store
	host            string
	out             chan int64
	current, target int64 // as last read; 0: none
	sent            int64
}

// read reads current and the host's target at one revision.
func (w *watcher) read(ctx context.Context) (int64, error) {
	tr, err := w.s.cli.Txn(ctx).Then(
		clientv3.OpGet(w.s.currentKey()),
		clientv3.OpGet(w.s.targetKey(w.host)),
	).Commit()
	if err != nil {
		return 0, err
	}
	w.current = number(tr.Responses[0].GetResponseRange().Kvs)
	w.target = 0
	if w.host != "" {
		w.target = number(tr.Responses[1].GetResponseRange().Kvs)
	}
	w.deliver(ctx)
	return tr.Header.Revision, nil
}

// number is the deploy number a key holds, 0 when absent or not a number.
func number[KV interface{ GetValue() []byte }](kvs []KV) int64 {
	if len(kvs) == 0 {
		return 0
	}
	n, err := parseNumber(kvs[0].GetValue())
	if err != nil {
		return 0
	}
	return n
}

// follow reads both keys again on every change from rev on, until ctx
// ends or the watch fails (the caller then reads again). It reacts to the
// state, not to the events: the keys are watched apart, so one
// transaction changing both (a rollout's end: current moved, the target
// deleted) arrives as two events, and applying the first alone would
// hand out the old current for a moment. A read sees the transaction whole.
func (w *watcher) follow(ctx context.Context, rev int64) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	cur := w.s.cli.Watch(ctx, w.s.currentKey(), clientv3.WithRev(rev))
	var tgt clientv3.WatchChan // nil without a host: never ready
	if w.host != "" {
		tgt = w.s.cli.Watch(ctx, w.s.targetKey(w.host), clientv3.WithRev(rev))
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-cur:
		case resp, ok = <-tgt:
		}
		if !ok || resp.Err() != nil {
			return
		}
		if _, err := w.read(ctx); err != nil {
			return
		}
	}
}

// deliver sends the wanted number if it changed, replacing an unread one.
func (w *watcher) deliver(ctx context.Context) {
	n := w.current
	if w.target != 0 {
		n = w.target
	}
	if n == 0 || n == w.sent {
		return
	}
	select { // only this goroutine sends: after the drain, the send cannot block
	case <-w.out:
	default:
	}
	select {
	case w.out <- n:
		w.sent = n
	case <-ctx.Done():
	}
}
