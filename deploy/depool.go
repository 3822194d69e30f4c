package deploy

import (
	"context"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NS deploy/depool/<host> holds the number of the deploy a rollout
// depooled host on: the host failed on it within the failure budget. A
// depooled agent withdraws its exports until the key goes, which it does
// when the host converges on a newer deploy (Repool) or when the rollout
// that set it is rolled back.

func (s *Store) depoolKey(host string) string { return s.ns + "depool/" + host }

// Depooled returns the deploy number host was depooled on, 0 when it is
// not depooled.
func (s *Store) Depooled(ctx context.Context, host string) (int64, error) {
	resp, err := s.cli.Get(ctx, s.depoolKey(host))
	if err != nil {
		return 0, fmt.Errorf("read depool of %s: %w", host, err)
	}
	return number(resp.Kvs), nil
}

// Repool deletes host's depool key if it was set for a deploy older than
// converged, the deploy the host has just converged on: a later good
// deploy brings the host back. It reports whether it deleted the key.
func (s *Store) Repool(ctx context.Context, host string, converged int64) (bool, error) {
	resp, err := s.cli.Get(ctx, s.depoolKey(host))
	if err != nil {
		return false, fmt.Errorf("repool %s: %w", host, err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	if n := number(resp.Kvs); n != 0 && n >= converged {
		return false, nil // depooled on this deploy (or a newer one): stays out
	}
	kv := resp.Kvs[0]
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
		Then(clientv3.OpDelete(string(kv.Key))).Commit()
	if err != nil {
		return false, fmt.Errorf("repool %s: %w", host, err)
	}
	return tr.Succeeded, nil
}

// WatchDepool delivers the deploy number host is depooled on, 0 when it
// is not: first what a first read finds, then every change. Like Watch,
// the channel holds only the newest value, is closed once ctx ends (read
// it to its end to join the goroutine behind it), and errors are retried.
func (s *Store) WatchDepool(ctx context.Context, host string) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		defer close(out)
		sent := int64(-1)
		send := func(n int64) {
			if n == sent {
				return
			}
			select { // only this goroutine sends: after the drain, the send cannot block
			case <-out:
			default:
			}
			select {
			case out <- n:
				sent = n
			case <-ctx.Done():
			}
		}
		for ctx.Err() == nil {
			resp, err := s.cli.Get(ctx, s.depoolKey(host))
			if err == nil {
				send(number(resp.Kvs))
				s.followDepool(ctx, host, resp.Header.Revision+1, send)
			}
			select { // a pause before reading again, so that a dead cluster is not hammered
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return out
}

func (s *Store) followDepool(ctx context.Context, host string, rev int64, send func(int64)) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.cli.Watch(ctx, s.depoolKey(host), clientv3.WithRev(rev)) {
		if resp.Err() != nil {
			return
		}
		for _, ev := range resp.Events {
			var n int64
			if ev.Type == clientv3.EventTypePut {
				n, _ = strconv.ParseInt(string(ev.Kv.Value), 10, 64)
			}
			send(n)
		}
	}
}
