package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KVStore is the store of the kv resources: plain string keys, each kept
// at <namespace>kv/<key> (the resource chooses the key, e.g. "hello" or,
// per host, "<host>/hello").
type KVStore struct{ c *Client }

// KV returns the kv resources' store of c.
func (c *Client) KV() *KVStore { return &KVStore{c: c} }

func (s *KVStore) key(k string) string { return s.c.ns + "kv/" + k }

// Get returns key's value; ok is false when the key is absent. A read is
// linearizable: it sees every write acknowledged before it.
func (s *KVStore) Get(ctx context.Context, key string) (string, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, s.c.timeout)
	defer cancel()
	resp, err := s.c.cli.Get(rctx, s.key(key))
	if err != nil {
		return "", false, fmt.Errorf("etcd: get %s: %w", s.key(key), err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

// CompareAndSwap sets key to *value, or deletes it when value is nil, in
// one transaction that holds only while the key still has *old (is still
// absent, when old is nil); swapped is false when it no longer does.
func (s *KVStore) CompareAndSwap(ctx context.Context, key string, old, value *string) (bool, error) {
	k := s.key(key)
	cond := clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	if old != nil {
		cond = clientv3.Compare(clientv3.Value(k), "=", *old)
	}
	op := clientv3.OpDelete(k)
	if value != nil {
		op = clientv3.OpPut(k, *value)
	}
	rctx, cancel := context.WithTimeout(ctx, s.c.timeout)
	defer cancel()
	resp, err := s.c.cli.Txn(rctx).If(cond).Then(op).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd: write %s: %w", k, err)
	}
	return resp.Succeeded, nil
}

// ErrClientClosed reports a watch whose client was closed under it.
var ErrClientClosed = errors.New("etcd client closed")

// Watch calls changed once the watch of key is in place, after each change
// of the key, and after the watch had to be set up again (a member without
// a leader, a compacted revision: a change may have been missed), until
// ctx ends (nil) or the client is closed (ErrClientClosed).
func (s *KVStore) Watch(ctx context.Context, key string, changed func()) error {
	k := s.key(key)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := s.follow(ctx, k, changed)
		switch {
		case ctx.Err() != nil:
			return nil
		case s.c.closed():
			return fmt.Errorf("etcd: watch %s: %w", k, ErrClientClosed)
		}
		s.c.log.Warn("kv watch interrupted, watching again", "key", k, "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// follow runs one watch of k until it fails or ctx ends; each watch that
// is created calls changed, so that a change made while no watch was in
// place is not lost.
func (s *KVStore) follow(ctx context.Context, k string, changed func()) error {
	// Without a leader a member's view may be stale forever: fail instead
	// and watch again, from a member that has one.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.c.cli.Watch(wctx, k, clientv3.WithCreatedNotify()) {
		if err := wr.Err(); err != nil {
			return err
		}
		if wr.Created || len(wr.Events) > 0 {
			changed()
		}
	}
	return errWatchClosed
}
