package kv

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/etcd"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func str(s string) *string { return &s }

// raw is the key as another host, or etcdctl, sees it.
func raw(c *etcd.Client, key string) string { return c.Namespace() + "kv/" + key }

// outsidePut writes the key behind the resource's back.
func outsidePut(t testing.TB, c *etcd.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Raw().Put(ctx, raw(c, key), value); err != nil {
		t.Fatal(err)
	}
}

func outsideDelete(t testing.TB, c *etcd.Client, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Raw().Delete(ctx, raw(c, key)); err != nil {
		t.Fatal(err)
	}
}

// stored is the key's value as etcd holds it, "(absent)" when it is not.
func stored(t testing.TB, c *etcd.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Raw().Get(ctx, raw(c, key))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return absent
	}
	return string(resp.Kvs[0].Value)
}

// newKV validates and initialises r as host, with c's store.
func newKV(t testing.TB, c *etcd.Client, host string, r *KV) *KV {
	t.Helper()
	must(t, r.Validate())
	env := restest.Env(t, "kv")
	env.Hostname, env.KV = host, c.KV()
	must(t, r.Init(env))
	return r
}

// TestConformance: the shared suite against a real etcd: the key is
// created; an outside put of another value, then an outside delete, are
// each seen by the watch and repaired.
func TestConformance(t *testing.T) {
	c := client(t)
	restest.Run(t, restest.Case{
		Kind:  "kv",
		KV:    c.KV(),
		Res:   func(t *testing.T) engine.Res { return &KV{Key: "hello", Value: str("world")} },
		State: func(t *testing.T) string { return stored(t, c, "hello") },
		Drifts: []restest.Drift{
			{Name: "outside put", Do: func(t *testing.T) { outsidePut(t, c, "hello", "moon") }},
			{Name: "outside delete", Do: func(t *testing.T) { outsideDelete(t, c, "hello") }},
		},
	})
}

// TestConformanceMappedSkipLessThan: the suite on a mapped counter: an
// outside put of a lower value is a drift that is repaired (raised back).
func TestConformanceMappedSkipLessThan(t *testing.T) {
	c := client(t)
	restest.Run(t, restest.Case{
		Kind: "kv",
		KV:   c.KV(),
		Res: func(t *testing.T) engine.Res {
			return &KV{Key: "stage", Value: str("3"), Mapped: true, SkipLessThan: true}
		},
		State: func(t *testing.T) string { return stored(t, c, "restest/stage") },
		Drifts: []restest.Drift{
			{Name: "lowered", Do: func(t *testing.T) { outsidePut(t, c, "restest/stage", "1") }},
		},
	})
}

// TestSkipLessThan: what a check-and-apply leaves in the key, from each
// stored value, with each comparison; a refresh writes the value whatever
// is stored.
func TestSkipLessThan(t *testing.T) {
	c := client(t)
	for _, tc := range []struct {
		name          string
		stored, value string
		style         int
		want          string // in the key afterwards
	}{
		{"lower is kept", "5", "3", CmpInt, "5"},
		{"higher is written", "3", "5", CmpInt, "5"},
		{"equal: nothing", "4", "4", CmpInt, "4"},
		{"as numbers 10 > 9", "10", "9", CmpInt, "10"},
		{"as strings 9 > 10", "10", "9", CmpString, "9"},
		{"as strings b < c", "c", "b", CmpString, "c"},
		{"negative raised", "-2", "-1", CmpInt, "-1"},
		{"not a number: overwritten", "garbage", "3", CmpInt, "3"},
		{"absent: written", absent, "3", CmpInt, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := strings.NewReplacer(" ", "-", ">", "gt", "<", "lt", ":", "").Replace(tc.name) // no escaping needed
			if tc.stored != absent {
				outsidePut(t, c, key, tc.stored)
			}
			r := newKV(t, c, "h", &KV{Key: key, Value: str(tc.value), SkipLessThan: true, SkipCmpStyle: tc.style})
			changed, err := restest.CheckApply(t, r, true)
			must(t, err)
			if got := stored(t, c, key); got != tc.want || changed != (tc.want != tc.stored) {
				t.Fatalf("stored %s, value %s: changed %v, the key holds %s; want %s", tc.stored, tc.value, changed, got, tc.want)
			}
			if changed, err := restest.CheckApply(t, r, true); err != nil || changed {
				t.Fatalf("second check: %v, %v: want nothing to do", changed, err)
			}
			if tc.want == tc.value {
				return
			}
			changed, err = r.Refresh(t.Context())
			if err != nil || !changed || stored(t, c, key) != tc.value {
				t.Fatalf("refresh: %v, %v, the key holds %s; want %s written", changed, err, stored(t, c, key), tc.value)
			}
		})
	}
}

// racer is the store with another writer that raises the counter right
// after the resource's first read: the resource must not write its lower
// value over it.
type racer struct {
	engine.KV
	c     *etcd.Client
	t     testing.TB
	gets  int
	raise string
}

func (r *racer) Get(ctx context.Context, key string) (string, bool, error) {
	v, ok, err := r.KV.Get(ctx, key)
	if r.gets++; r.gets == 1 {
		outsidePut(r.t, r.c, key, r.raise)
	}
	return v, ok, err
}

// TestSkipLessThanRace: a counter raised by another host between the
// resource's read and its write is not lowered: the write is a
// compare-and-swap, which fails, and the key is read again.
func TestSkipLessThanRace(t *testing.T) {
	c := client(t)
	outsidePut(t, c, "n", "1")
	r := &KV{Key: "n", Value: str("5"), SkipLessThan: true}
	must(t, r.Validate())
	env := restest.Env(t, "kv")
	st := &racer{KV: c.KV(), c: c, t: t, raise: "9"}
	env.KV = st
	must(t, r.Init(env))
	changed, err := restest.CheckApply(t, r, true)
	must(t, err)
	if got := stored(t, c, "n"); got != "9" || changed || st.gets != 2 {
		t.Fatalf("changed %v after %d reads, the key holds %s; want 9 kept, read twice", changed, st.gets, got)
	}
}

// TestDelete: without a value the key is deleted (the original's
// behaviour); an absent key has nothing to do.
func TestDelete(t *testing.T) {
	c := client(t)
	outsidePut(t, c, "gone", "x")
	r := newKV(t, c, "h", &KV{Key: "gone"})
	rec := &restest.Recorder{}
	changed, err := r.CheckApply(engine.WithRecorder(t.Context(), rec), false)
	must(t, err)
	want := engine.Change{Property: "value", From: "x", To: absent, Why: "no value given: the key is deleted"}
	if cs := rec.Changes(); !changed || len(cs) != 1 || cs[0] != want || stored(t, c, "gone") != "x" {
		t.Fatalf("noop: changed %v, reported %+v, the key holds %s; want %+v and the key kept", changed, cs, stored(t, c, "gone"), want)
	}
	if changed, err := restest.CheckApply(t, r, true); err != nil || !changed || stored(t, c, "gone") != absent {
		t.Fatalf("apply: %v, %v, the key holds %s", changed, err, stored(t, c, "gone"))
	}
	if changed, err := restest.CheckApply(t, r, true); err != nil || changed {
		t.Fatalf("second apply: %v, %v", changed, err)
	}
}

// TestMapped: the same key mapped on two hosts is two keys, each host's
// own, both visible; an unmapped key with a / in it is never one of them.
func TestMapped(t *testing.T) {
	c := client(t)
	a := newKV(t, c, "a", &KV{Key: "role", Value: str("web"), Mapped: true})
	b := newKV(t, c, "b", &KV{Key: "role", Value: str("db"), Mapped: true})
	shared := newKV(t, c, "a", &KV{Key: "a/role", Value: str("shared")})
	for _, r := range []*KV{a, b, shared} {
		if changed, err := restest.CheckApply(t, r, true); err != nil || !changed {
			t.Fatalf("%s: %v, %v", r.storeKey(), changed, err)
		}
	}
	for key, want := range map[string]string{"a/role": "web", "b/role": "db", "a%2Frole": "shared", "role": absent} {
		if got := stored(t, c, key); got != want {
			t.Errorf("key kv/%s holds %s, want %s", key, got, want)
		}
	}
	for _, r := range []*KV{a, b, shared} {
		if changed, err := restest.CheckApply(t, r, true); err != nil || changed {
			t.Errorf("%s: second check %v, %v: the resources undo each other", r.storeKey(), changed, err)
		}
	}
}

// TestNoCluster: without the cluster's store (tested alone, or run by
// something other than mgmt run) the resource fails at once, saying why.
func TestNoCluster(t *testing.T) {
	r := &KV{Key: "hello", Value: str("world")}
	must(t, r.Validate())
	err := r.Init(restest.Env(t, "kv"))
	if !errors.Is(err, ErrNoCluster) || !strings.Contains(err.Error(), `key "hello"`) {
		t.Fatalf("Init without a store: %v, want ErrNoCluster naming the key", err)
	}
	t.Logf("the error: %v", err)
	if _, err := r.CheckApply(t.Context(), false); !errors.Is(err, ErrNoCluster) {
		t.Errorf("CheckApply without a store: %v", err)
	}
	ev := restest.NewEvents()
	if err := r.Watch(t.Context(), ev); !errors.Is(err, ErrNoCluster) {
		t.Errorf("Watch without a store: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		res  KV
		want string
	}{
		{KV{Value: str("x")}, "key: missing"},
		{KV{Key: strings.Repeat("k", MaxKey+1)}, "want at most 4096"},
		{KV{Key: "k", Value: str(strings.Repeat("v", MaxValue+1))}, "want at most 1048576"},
		{KV{Key: "k", Value: str("three"), SkipLessThan: true}, "not a whole number"},
		{KV{Key: "k", Value: str("1"), SkipCmpStyle: 2}, "want 0 (compare whole numbers"},
	} {
		err := c.res.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.res, err, c.want)
		}
	}
	ok := &KV{Value: str("three"), SkipLessThan: true, SkipCmpStyle: CmpString}
	ok.SetName("from-name")
	if err := ok.Validate(); err != nil || ok.key() != "from-name" {
		t.Errorf("a key from the name, compared as strings: %v, key %q", err, ok.key())
	}
}

// TestExample runs examples/kv1.yaml, the original mgmt's, unchanged:
// hello is world in the cluster.
func TestExample(t *testing.T) {
	yg, err := yamlgraph.ParseFile("../../examples/kv1.yaml")
	must(t, err)
	c := client(t)
	if len(yg.Vertices) != 1 {
		t.Fatalf("%d resources", len(yg.Vertices))
	}
	r, ok := yg.Vertices[0].Res.(*KV)
	if !ok {
		t.Fatalf("%T", yg.Vertices[0].Res)
	}
	newKV(t, c, "h", r)
	if changed, err := restest.CheckApply(t, r, true); err != nil || !changed {
		t.Fatal(changed, err)
	}
	if got := stored(t, c, "hello"); got != "world" {
		t.Fatalf("hello holds %s", got)
	}
}

// TestGraph: several kvs of one key, ordered by edges (the original's
// stages of a state machine), are one valid graph, and a kv asks for the
// cluster.
func TestGraph(t *testing.T) {
	const g = `resources:
  kv:
  - {name: s1, key: stage, value: "1", skiplessthan: true}
  - {name: s2, key: stage, value: "2", skiplessthan: true}
edges:
- {name: e1, from: {kind: kv, name: s1}, to: {kind: kv, name: s2}}
`
	yg, err := yamlgraph.Parse("stages.yaml", []byte(g))
	must(t, err)
	_, err = engine.Compile(context.Background(), &yg.Decl, slog.New(slog.DiscardHandler))
	must(t, err)
	var cu engine.ClusterUser = yg.Vertices[0].Res.(*KV)
	if !cu.NeedsCluster() {
		t.Error("a kv does not ask for the cluster")
	}
}

// BenchmarkRepairLatency: an outside put of another value, until the
// watching loop has written the value back.
func BenchmarkRepairLatency(b *testing.B) {
	c := client(b)
	r := newKV(b, c, "h", &KV{Key: "bench", Value: str("want")})
	repaired := make(chan time.Time, 16)
	restest.Loop(b, r, func(changed bool, err error) {
		if err != nil {
			b.Error(err)
		}
		if changed {
			repaired <- time.Now()
		}
	})
	<-repaired // the first apply
	var lat []time.Duration
	for b.Loop() {
		at := time.Now()
		outsidePut(b, c, "bench", "drift")
		select {
		case t := <-repaired:
			lat = append(lat, t.Sub(at))
		case <-time.After(restest.DefaultTimeout):
			b.Fatal("not repaired")
		}
	}
	restest.ReportLatency(b, lat)
}
