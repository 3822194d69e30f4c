package noop

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type events struct{ running, dirty atomic.Int32 }

func (e *events) Running() { e.running.Add(1) }
func (e *events) Dirty()   { e.dirty.Add(1) }

func TestCheckApplyNeverChanges(t *testing.T) {
	n := &Noop{Comment: "ordering point"}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, apply := range []bool{true, false, true} {
		if changed, err := n.CheckApply(context.Background(), apply); changed || err != nil {
			t.Fatalf("CheckApply(apply %v) = %v, %v; want false, nil", apply, changed, err)
		}
	}
}

func TestWatch(t *testing.T) {
	n := &Noop{}
	ev := &events{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Watch(ctx, ev) }()
	deadline := time.Now().Add(5 * time.Second)
	for ev.running.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Watch never reported Running")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Watch returned %v before ctx ended", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	if ev.running.Load() != 1 || ev.dirty.Load() != 0 {
		t.Fatalf("Running %d times, Dirty %d times; want 1 and 0", ev.running.Load(), ev.dirty.Load())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeStrict(t *testing.T) {
	decode := func(src string) (*Noop, error) {
		d := yaml.NewDecoder(bytes.NewBufferString(src))
		d.KnownFields(true)
		var n Noop
		return &n, d.Decode(&n)
	}
	if n, err := decode("comment: before the files\n"); err != nil || n.Comment != "before the files" {
		t.Fatalf("decode comment: %+v, %v", n, err)
	}
	if _, err := decode("state: present\n"); err == nil {
		t.Fatal("an unknown field decoded without error")
	}
}
