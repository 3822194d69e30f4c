package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// StateLost is a host state only readers give: the host's lease expired.
const StateLost = "lost"

// StatusTTL is the lease of a host's live status record: a host that has
// not kept it alive this long is lost.
const StatusTTL = 10 * time.Second

// same: a and b say the same but for the times.
func (a HostStatus) same(b HostStatus) bool {
	a.ChangedAt, a.UpdatedAt, b.ChangedAt, b.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// moved: b differs from a in what changed_at dates (not the drift count).
func (a HostStatus) moved(b HostStatus) bool {
	a.Drifts, b.Drifts = 0, 0
	return !a.same(b)
}

func statusPrefix(c *etcd.Client) string { return c.Namespace() + "status/" }
func lastPrefix(c *etcd.Client) string   { return c.Namespace() + "status-last/" }

// StatusPublisher keeps a host's status record in etcd: the live one on a
// lease it keeps alive (granted again if it is lost, after a partition
// longer than the TTL), and the lease-less last-known copy.
type StatusPublisher struct {
	c    *etcd.Client
	host string
	log  *slog.Logger
	// Snapshot returns the host's status now; the publisher sets
	// ChangedAt and UpdatedAt. It is called from Run's goroutine.
	snapshot func() HostStatus
	dirty    chan struct{} // one slot: Notify
	// TTL and MinInterval default to StatusTTL and 200 ms.
	TTL         time.Duration
	MinInterval time.Duration
}

// NewStatusPublisher publishes what snapshot returns for host through c,
// each time Notify is called (coalesced: at most one write per
// MinInterval, and none when nothing changed).
func NewStatusPublisher(c *etcd.Client, host string, snapshot func() HostStatus, log *slog.Logger) *StatusPublisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &StatusPublisher{c: c, host: host, log: log, snapshot: snapshot, dirty: make(chan struct{}, 1),
		TTL: StatusTTL, MinInterval: 200 * time.Millisecond}
}

// Notify says the status may have changed. It never blocks.
func (p *StatusPublisher) Notify() {
	select {
	case p.dirty <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends, then revokes the lease (the host is lost
// at once: it stopped) within a short bound.
func (p *StatusPublisher) Run(ctx context.Context) {
	var last HostStatus // the last record written, with its times
	for ctx.Err() == nil {
		err := p.session(ctx, &last)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("status not published; trying again", "err", err, "in", time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

var errLeaseLost = errors.New("status lease lost")

// session publishes on one lease until it is lost or ctx ends.
func (p *StatusPublisher) session(ctx context.Context, last *HostStatus) error {
	cli := p.c.Raw()
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	lease, err := cli.Grant(gctx, int64(p.TTL/time.Second))
	cancel()
	if err != nil {
		return fmt.Errorf("grant status lease: %w", err)
	}
	kctx, stopKeep := context.WithCancel(ctx)
	defer stopKeep()
	ka, err := cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep status lease alive: %w", err)
	}
	defer func() {
		if ctx.Err() != nil { // stopping: the host is gone from now on
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 300*time.Millisecond)
			cli.Revoke(rctx, lease.ID)
			cancel()
		}
	}()
	// A new lease needs the record put again, changed or not.
	if err := p.put(ctx, lease.ID, last, true); err != nil {
		return err
	}
	var lastPut time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ka:
			if !ok {
				return errLeaseLost
			}
			continue
		case <-p.dirty:
		}
		if wait := p.MinInterval - time.Since(lastPut); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		lastPut = time.Now()
		if err := p.put(ctx, lease.ID, last, false); err != nil {
			return err
		}
	}
}

// put writes the snapshot, unless it says what *last says (and !force).
func (p *StatusPublisher) put(ctx context.Context, lease clientv3.LeaseID, last *HostStatus, force bool) error {
	s := p.snapshot()
	s.Host = p.host
	if s.Failed == nil {
		s.Failed = []FailedRes{}
	}
	if !force && s.same(*last) {
		return nil
	}
	now := time.Now().UTC()
	s.ChangedAt = last.ChangedAt
	if s.ChangedAt.IsZero() || s.moved(*last) {
		s.ChangedAt = now
	}
	s.UpdatedAt = now
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = p.c.Raw().Txn(pctx).Then(
		clientv3.OpPut(statusPrefix(p.c)+p.host, string(v), clientv3.WithLease(lease)),
		clientv3.OpPut(lastPrefix(p.c)+p.host, string(v)),
	).Commit()
	if err != nil {
		return fmt.Errorf("put status: %w", err)
	}
	*last = s
	return nil
}

// ReadStatus returns every host's status, sorted by host: the live
// records, and for each host whose lease expired its last record with
// State "lost" (LastState what it said).
func ReadStatus(ctx context.Context, c *etcd.Client) ([]HostStatus, error) {
	tr, err := c.Raw().Txn(ctx).Then(
		clientv3.OpGet(statusPrefix(c), clientv3.WithPrefix()),
		clientv3.OpGet(lastPrefix(c), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	return decodeStatus(c, tr.Responses[0].GetResponseRange().Kvs, tr.Responses[1].GetResponseRange().Kvs), nil
}

type kv interface {
	GetKey() []byte
	GetValue() []byte
}

func decodeStatus[KV kv](c *etcd.Client, live, lastKnown []KV) []HostStatus {
	byHost := map[string]HostStatus{}
	for _, kv := range lastKnown {
		var s HostStatus
		if json.Unmarshal(kv.GetValue(), &s) != nil {
			continue
		}
		s.Host = strings.TrimPrefix(string(kv.GetKey()), lastPrefix(c))
		s.LastState, s.State = s.State, StateLost
		byHost[s.Host] = s
	}
	for _, kv := range live {
		var s HostStatus
		if json.Unmarshal(kv.GetValue(), &s) != nil {
			continue
		}
		s.Host = strings.TrimPrefix(string(kv.GetKey()), statusPrefix(c))
		byHost[s.Host] = s
	}
	out := make([]HostStatus, 0, len(byHost))
	for _, s := range byHost {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// WatchStatus delivers every host's status (as ReadStatus) now and after
// each change. The channel holds only the newest list; it is closed once
// ctx ends. Errors are retried.
func WatchStatus(ctx context.Context, c *etcd.Client) <-chan []HostStatus {
	out := make(chan []HostStatus, 1)
	send := func(s []HostStatus) {
		select {
		case <-out:
		default:
		}
		select {
		case out <- s:
		case <-ctx.Done():
		}
	}
	go func() {
		defer close(out)
		for ctx.Err() == nil {
			tr, err := c.Raw().Txn(ctx).Then(
				clientv3.OpGet(statusPrefix(c), clientv3.WithPrefix()),
				clientv3.OpGet(lastPrefix(c), clientv3.WithPrefix()),
			).Commit()
			if err == nil {
				live := tr.Responses[0].GetResponseRange().Kvs
				known := tr.Responses[1].GetResponseRange().Kvs
				send(decodeStatus(c, live, known))
				followStatus(ctx, c, tr.Header.Revision+1, send)
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return out
}

// followStatus re-reads on every change of either prefix from rev on,
// until the watch fails or ctx ends.
func followStatus(ctx context.Context, c *etcd.Client, rev int64, send func([]HostStatus)) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Both prefixes share "status": watch that and keep what is ours.
	w := c.Raw().Watch(ctx, c.Namespace()+"status", clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range w {
		if resp.Err() != nil {
			return
		}
		s, err := ReadStatus(ctx, c)
		if err != nil {
			return
		}
		send(s)
	}
}
