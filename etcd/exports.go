package etcd

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Export is one exported resource as it crosses etcd: plain data, so that
// this package knows nothing of the engine's resources.
type Export struct {
	Host   string // the exporting host
	Kind   string // the resource kind, e.g. "file"
	Name   string // the resource's name, without the "@@" marker
	Params []byte // the resource's YAML parameters, opaque here
}

var (
	// ErrInvalidExport reports an export that cannot be stored: an empty
	// host, kind or name, a name given twice, or a foreign host.
	ErrInvalidExport = errors.New("invalid export")
	// ErrConflict reports that Publish kept losing to another writer of the
	// same host's exports (two agents started with the same --hostname).
	ErrConflict = errors.New("concurrent publish for the same host")
)

// Exports live one key per resource: <namespace>exported/<host>/<kind>/<name>,
// each part path-escaped, the value being the parameters.
func (c *Client) exportsPrefix() string { return c.ns + "exported/" }

func (c *Client) hostPrefix(host string) string {
	return c.exportsPrefix() + url.PathEscape(host) + "/"
}

func (c *Client) exportKey(host, kind, name string) string {
	return c.hostPrefix(host) + url.PathEscape(kind) + "/" + url.PathEscape(name)
}

// parseExportKey is the inverse of exportKey; ok is false for keys that
// are not exports (nothing else should live under the prefix).
func (c *Client) parseExportKey(key string) (host, kind, name string, ok bool) {
	rest, found := strings.CutPrefix(key, c.exportsPrefix())
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", "", false
	}
	var err error
	if host, err = url.PathUnescape(parts[0]); err != nil {
		return "", "", "", false
	}
	if kind, err = url.PathUnescape(parts[1]); err != nil {
		return "", "", "", false
	}
	if name, err = url.PathUnescape(parts[2]); err != nil {
		return "", "", "", false
	}
	return host, kind, name, host != "" && kind != "" && name != ""
}

// Publish makes exports the complete set of host's exported resources: in
// one transaction it deletes the host's keys that are not in the set and
// writes those that are new or changed, so that a watcher sees either the
// old set or the new one, never a mixture. Publishing an unchanged set
// writes nothing; publishing an empty set withdraws all of host's exports.
//
// Exports are not tied to the agent's liveness: they stay in etcd when the
// agent stops, as they did in the original mgmt (see docs/cluster.md).
// Each Export's Host must be empty or equal to host.
func (c *Client) Publish(ctx context.Context, host string, exports []Export) error {
	if host == "" {
		return fmt.Errorf("%w: empty host name", ErrInvalidExport)
	}
	want := make(map[string][]byte, len(exports))
	for _, e := range exports {
		if e.Host != "" && e.Host != host {
			return fmt.Errorf("%w: %s[%s] belongs to host %q, not %q", ErrInvalidExport, e.Kind, e.Name, e.Host, host)
		}
		if e.Kind == "" || e.Name == "" {
			return fmt.Errorf("%w: kind %q name %q: both are needed", ErrInvalidExport, e.Kind, e.Name)
		}
		k := c.exportKey(host, e.Kind, e.Name)
		if _, dup := want[k]; dup {
			return fmt.Errorf("%w: %s[%s] given twice", ErrInvalidExport, e.Kind, e.Name)
		}
		want[k] = e.Params
	}
	prefix := c.hostPrefix(host)
	for range 5 {
		done, err := c.publishOnce(ctx, prefix, want)
		if err != nil {
			return fmt.Errorf("publish exports of %q: %w", host, err)
		}
		if done {
			return nil
		}
	}
	return fmt.Errorf("publish exports of %q: %w", host, ErrConflict)
}

// publishOnce reads the host's current keys and replaces them, provided no
// key under prefix changed since the read; done is false if one did.
func (c *Client) publishOnce(ctx context.Context, prefix string, want map[string][]byte) (done bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.cli.Get(rctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return false, err
	}
	var ops []clientv3.Op
	have := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		have[k] = true
		v, keep := want[k]
		switch {
		case !keep:
			ops = append(ops, clientv3.OpDelete(k))
		case !bytes.Equal(v, kv.Value):
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	for k, v := range want {
		if !have[k] {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	if len(ops) == 0 {
		return true, nil
	}
	// A key created or changed under prefix after the read has a higher
	// mod revision; a key deleted since is harmless to delete again.
	unchanged := clientv3.Compare(clientv3.ModRevision(prefix).WithPrefix(), "<", resp.Header.Revision+1)
	tr, err := c.cli.Txn(rctx).If(unchanged).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	return tr.Succeeded, nil
}

// WatchExports follows the exports of every host but self, keeping those
// whose kind is in kinds. The channel receives a full snapshot, sorted by
// host, kind and name: the first at once, then one after each change. A
// reader that falls behind misses intermediate snapshots, never the latest;
// the watch never blocks on it. The channel is closed when ctx ends or the
// client is closed. Lost connections and compacted history are recovered
// from by reading everything again; an error is returned only if the first
// read fails. Snapshots share their Params: treat them as read-only.
func (c *Client) WatchExports(ctx context.Context, self string, kinds []string) (<-chan []Export, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: no kinds to collect", ErrConfig)
	}
	w := &exportWatch{
		c:     c,
		self:  self,
		kinds: make(map[string]bool, len(kinds)),
		state: make(map[string]Export),
		out:   make(chan []Export),
	}
	for _, k := range kinds {
		if k == "" {
			return nil, fmt.Errorf("%w: empty kind to collect", ErrConfig)
		}
		w.kinds[k] = true
	}
	if c.closed() {
		return nil, fmt.Errorf("watch exports: %w", context.Canceled)
	}
	rev, err := w.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch exports: %w", err)
	}
	c.wg.Add(1)
	go w.run(ctx, rev)
	return w.out, nil
}

// exportWatch is the state of one WatchExports; only its goroutine uses it.
type exportWatch struct {
	c     *Client
	self  string
	kinds map[string]bool
	state map[string]Export // by key: the exports that pass the filter

	out      chan []Export
	pending  []Export // the latest snapshot, not yet received
	waiting  bool     // pending holds a snapshot to send
	last     []Export // the last snapshot received
	sentOnce bool
}

var errWatchClosed = errors.New("watch channel closed")

func (w *exportWatch) run(ctx context.Context, rev int64) {
	defer w.c.wg.Done()
	defer close(w.out)
	for {
		err := w.follow(ctx, rev)
		if ctx.Err() != nil || w.c.closed() {
			return
		}
		w.c.log.Warn("exports watch interrupted, reading again", "err", err)
		delay := 50 * time.Millisecond
		for {
			if !w.sleep(ctx, delay) {
				return
			}
			rev, err = w.load(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil || w.c.closed() {
				return
			}
			w.c.log.Warn("exports read failed, retrying", "err", err, "in", delay)
			delay = min(2*delay, 5*time.Second)
		}
	}
}

// load reads every export, replaces the state with them and returns the
// revision to watch from.
func (w *exportWatch) load(ctx context.Context) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, w.c.timeout)
	defer cancel()
	resp, err := w.c.cli.Get(rctx, w.c.exportsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	clear(w.state)
	for _, kv := range resp.Kvs {
		w.put(kv)
	}
	w.update()
	return resp.Header.Revision + 1, nil
}

// follow applies watch events from rev on until the watch fails or ctx
// ends, delivering snapshots meanwhile. Each watch response holds whole
// revisions, and a Publish is one revision, so a snapshot taken after a
// response never holds half of a host's set.
func (w *exportWatch) follow(ctx context.Context, rev int64) error {
	// Without a leader a member's view may be stale forever: fail instead
	// and read again, from a member that has one.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.c.cli.Watch(wctx, w.c.exportsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case w.sendChan() <- w.pending:
			w.sent()
		case wr, ok := <-wch:
			if !ok {
				return errWatchClosed
			}
			if err := wr.Err(); err != nil {
				return err
			}
			for _, ev := range wr.Events {
				switch ev.Type {
				case mvccpb.PUT:
					w.put(ev.Kv)
				case mvccpb.DELETE:
					delete(w.state, string(ev.Kv.Key))
				}
			}
			w.update()
		}
	}
}

// sleep waits for d while still delivering snapshots; false if ctx ended.
func (w *exportWatch) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case w.sendChan() <- w.pending:
			w.sent()
		}
	}
}

func (w *exportWatch) put(kv *mvccpb.KeyValue) {
	host, kind, name, ok := w.c.parseExportKey(string(kv.Key))
	if !ok || host == w.self || !w.kinds[kind] {
		return
	}
	w.state[string(kv.Key)] = Export{Host: host, Kind: kind, Name: name, Params: kv.Value}
}

// update makes the current state the snapshot to send, unless the reader
// already has it.
func (w *exportWatch) update() {
	snap := make([]Export, 0, len(w.state))
	for _, e := range w.state {
		snap = append(snap, e)
	}
	slices.SortFunc(snap, compareExports)
	if w.sentOnce && equalExports(snap, w.last) {
		w.pending, w.waiting = nil, false
		return
	}
	w.pending, w.waiting = snap, true
}

func (w *exportWatch) sendChan() chan<- []Export {
	if w.waiting {
		return w.out
	}
	return nil
}

func (w *exportWatch) sent() {
	w.last, w.sentOnce = w.pending, true
	w.pending, w.waiting = nil, false
}

func compareExports(a, b Export) int {
	return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
}

func equalExports(a, b []Export) bool {
	return slices.EqualFunc(a, b, func(x, y Export) bool {
		return compareExports(x, y) == 0 && bytes.Equal(x.Params, y.Params)
	})
}
