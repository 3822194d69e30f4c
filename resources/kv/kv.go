// Package kv is the kv resource: a key in the cluster's etcd, shared by all hosts or one per host, set to a value (or deleted), optionally only ever raised, watched and repaired.
package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/mgmtconfig/mgmt/engine"
)

func init() {
	engine.Register("kv", func() engine.Res { return &KV{} })
}

// The comparisons skiplessthan can use (the original mgmt's
// skipcmpstyle).
const (
	CmpInt    = 0 // as whole numbers (int64)
	CmpString = 1 // as strings, byte by byte
)

// Bounds of what a kv keeps: etcd refuses a request larger than 1.5 MiB.
const (
	MaxKey   = 4096
	MaxValue = 1 << 20
)

// maxRaces is how often CheckApply reads again after another writer
// changed the key between its read and its write.
const maxRaces = 10

// ErrNoCluster is a kv run without the cluster's store (tested alone, or
// by something other than `mgmt run`).
var ErrNoCluster = errors.New("no cluster: a kv keeps its key in the cluster's etcd, which `mgmt run` starts for a graph holding a kv")

// KV keeps Key at Value in the cluster's etcd. The parameters are the
// original mgmt's.
type KV struct {
	Key string `yaml:"key"` // default: the resource's name
	// Value is what the key holds; not given (or null), the key is
	// deleted.
	Value *string `yaml:"value"`
	// Mapped keeps one key per host (this host's is written; every host's
	// is visible to all) instead of one shared by all hosts.
	Mapped bool `yaml:"mapped"`
	// SkipLessThan never lowers the stored value: a stored value greater
	// than Value is left alone (a monotonic counter, a stage reached).
	SkipLessThan bool `yaml:"skiplessthan"`
	// SkipCmpStyle is how SkipLessThan compares: CmpInt (default) or
	// CmpString.
	SkipCmpStyle int `yaml:"skipcmpstyle"`

	name  string
	host  string
	store engine.KV
	log   *slog.Logger
}

// SetName keeps the resource's name, the key's default.
func (r *KV) SetName(name string) { r.name = name }

func (r *KV) key() string {
	if r.Key != "" {
		return r.Key
	}
	return r.name
}

// NeedsCluster: the key lives in the cluster's etcd (engine.ClusterUser).
func (r *KV) NeedsCluster() bool { return true }

// Validate checks the parameters; every problem is reported at once.
func (r *KV) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch k := r.key(); {
	case k == "":
		bad("key: missing: want the key to set, e.g. key: hello (it defaults to the resource's name)")
	case len(k) > MaxKey:
		bad("key: %d bytes: want at most %d", len(k), MaxKey)
	}
	if r.Value != nil && len(*r.Value) > MaxValue {
		bad("value: %d bytes: want at most %d (1 MiB; etcd refuses larger requests)", len(*r.Value), MaxValue)
	}
	switch r.SkipCmpStyle {
	case CmpInt:
		if r.SkipLessThan && r.Value != nil {
			if _, err := strconv.ParseInt(*r.Value, 10, 64); err != nil {
				bad("value: %q is not a whole number: skiplessthan compares values as whole numbers (skipcmpstyle 0); give a number, or skipcmpstyle: 1 to compare strings", *r.Value)
			}
		}
	case CmpString:
	default:
		bad("skipcmpstyle: %d is invalid: want 0 (compare whole numbers, the default) or 1 (compare strings)", r.SkipCmpStyle)
	}
	return errors.Join(errs...)
}

// Init keeps the cluster's store, the host (for a mapped key) and the
// logger. Without a store (no cluster) it fails with ErrNoCluster.
func (r *KV) Init(env engine.Env) error {
	if env.KV == nil {
		return fmt.Errorf("kv: key %q: %w", r.key(), ErrNoCluster)
	}
	if r.Mapped && env.Hostname == "" {
		return errors.New("kv: mapped: this host has no name to map the key under")
	}
	r.store, r.host, r.log = env.KV, env.Hostname, env.Logger
	return nil
}

// storeKey is where the key lives in the store: the key, or with mapped
// the host, then the key; each path-escaped, so that no key of one form
// is a key of the other.
func (r *KV) storeKey() string {
	k := url.PathEscape(r.key())
	if r.Mapped {
		return url.PathEscape(r.host) + "/" + k
	}
	return k
}

func (r *KV) ready() error {
	if r.store == nil {
		return fmt.Errorf("kv: key %q: %w", r.key(), ErrNoCluster)
	}
	if r.key() == "" {
		return r.Validate()
	}
	return nil
}

// Watch reports every change of the key, through an etcd watch.
func (r *KV) Watch(ctx context.Context, ev engine.Events) error {
	if err := r.ready(); err != nil {
		return err
	}
	err := r.store.Watch(ctx, r.storeKey(), func() {
		ev.Running()
		ev.Dirty()
	})
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("the watch ended")
	}
	return fmt.Errorf("kv: watch key %q: %w", r.key(), err)
}

// Close has nothing to release: Watch ends its watch when it returns.
func (r *KV) Close() error { return nil }

// CheckApply reads the key and, when it is not as wanted, reports the
// change and with apply writes it, in a transaction that holds only if
// the key is still as read: a writer that came in between (another host
// raising a counter) is never overwritten blindly; the key is read again.
func (r *KV) CheckApply(ctx context.Context, apply bool) (bool, error) {
	return r.converge(ctx, apply, false)
}

// Refresh writes Value even when SkipLessThan would keep a greater stored
// one (the original's behaviour on a refresh from a notify edge).
func (r *KV) Refresh(ctx context.Context) (bool, error) {
	return r.converge(ctx, true, true)
}

func (r *KV) converge(ctx context.Context, apply, refresh bool) (bool, error) {
	if err := r.ready(); err != nil {
		return false, err
	}
	for range maxRaces {
		cur, ok, err := r.store.Get(ctx, r.storeKey())
		if err != nil {
			return false, fmt.Errorf("kv: key %q: %w", r.key(), err)
		}
		var old *string
		if ok {
			old = &cur
		}
		change := r.decide(old, refresh)
		if change == nil {
			return false, nil
		}
		if !apply {
			engine.Changed(ctx, *change)
			return true, nil
		}
		swapped, err := r.store.CompareAndSwap(ctx, r.storeKey(), old, r.Value)
		if err != nil {
			return false, fmt.Errorf("kv: key %q: %w", r.key(), err)
		}
		if swapped {
			engine.Changed(ctx, *change)
			return true, nil
		}
		if r.log != nil {
			r.log.Debug("the key changed between its read and its write: reading it again", "key", r.key())
		}
	}
	return false, fmt.Errorf("kv: key %q: changed by another writer between each of %d reads and writes: giving up this time", r.key(), maxRaces)
}

// absent is how a missing key is shown.
const absent = "(absent)"

// decide returns the change that makes the stored value old (nil: the
// key is absent) what the resource wants, or nil when there is none.
func (r *KV) decide(old *string, refresh bool) *engine.Change {
	c := &engine.Change{Property: "value", From: absent, To: absent}
	if old != nil {
		c.From = *old
	}
	switch {
	case r.Value == nil && old == nil:
		return nil
	case r.Value == nil:
		c.Why = "no value given: the key is deleted"
		return c
	case old == nil:
		c.To, c.Why = *r.Value, "the key is missing"
		return c
	case *old == *r.Value:
		return nil
	}
	c.To, c.Why = *r.Value, "the key holds another value"
	if !r.SkipLessThan {
		return c
	}
	less, why := r.less(*r.Value, *old)
	switch {
	case less && refresh:
		c.Why = "refreshed: written although " + why + " (skiplessthan yields to a refresh)"
	case less:
		return nil
	default:
		c.Why = why
	}
	return c
}

// less reports whether the wanted value is less than the stored one, as
// SkipCmpStyle compares, and says why in words. A stored value that is not
// a whole number (left by an old run, or corrupt) is not greater than any:
// it is overwritten.
func (r *KV) less(want, stored string) (bool, string) {
	if r.SkipCmpStyle == CmpString {
		if want < stored {
			return true, fmt.Sprintf("%q sorts before the stored %q", want, stored)
		}
		return false, fmt.Sprintf("%q sorts after the stored %q (skiplessthan)", want, stored)
	}
	s, err := strconv.ParseInt(stored, 10, 64)
	if err != nil {
		return false, fmt.Sprintf("the stored %q is not a whole number (skiplessthan): overwritten", stored)
	}
	w, _ := strconv.ParseInt(want, 10, 64) // Validate checked it
	if w < s {
		return true, fmt.Sprintf("%d is less than the stored %d", w, s)
	}
	return false, fmt.Sprintf("%d is greater than the stored %d (skiplessthan)", w, s)
}
