package etcd

import (
	"context"
	"errors"
	"testing"
	"time"
)

func strp(s string) *string { return &s }

// TestKVCompareAndSwap: a write holds only while the key is as the writer
// read it, absent included; a nil value deletes.
func TestKVCompareAndSwap(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "kv"))
	kv := connectTest(t, s.Endpoints()).KV()
	ctx := t.Context()
	step := func(what string, old, value *string, want bool) {
		t.Helper()
		got, err := kv.CompareAndSwap(ctx, "k", old, value)
		if err != nil || got != want {
			t.Fatalf("%s: swapped %v, %v; want %v", what, got, err, want)
		}
	}
	step("create when absent", nil, strp("1"), true)
	step("create again", nil, strp("2"), false)
	step("from a stale value", strp("0"), strp("2"), false)
	step("from the stored value", strp("1"), strp("2"), true)
	if v, ok, err := kv.Get(ctx, "k"); err != nil || !ok || v != "2" {
		t.Fatalf("get: %q, %v, %v", v, ok, err)
	}
	step("delete from a stale value", strp("1"), nil, false)
	step("delete", strp("2"), nil, true)
	if _, ok, err := kv.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("get after delete: %v, %v", ok, err)
	}
}

// TestKVWatch: changed is called once the watch is in place and after a
// put; the watch ends with nil when its context does, and with
// ErrClientClosed when its client is closed under it.
func TestKVWatch(t *testing.T) {
	s := startTestServer(t, testServerConfig(t, "kv"))
	c := connectTest(t, s.Endpoints())
	kv := c.KV()
	calls := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- kv.Watch(ctx, "k", func() { calls <- struct{}{} }) }()
	next := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatalf("changed not called: %s", what)
		}
	}
	next("the watch in place")
	if _, err := kv.CompareAndSwap(t.Context(), "k", nil, strp("v")); err != nil {
		t.Fatal(err)
	}
	next("after a put")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after its context ended: %v", err)
	}

	go func() { done <- kv.Watch(t.Context(), "k", func() { calls <- struct{}{} }) }()
	next("the second watch in place")
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClientClosed) {
			t.Fatalf("after the client closed: %v, want ErrClientClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end when its client was closed")
	}
}
