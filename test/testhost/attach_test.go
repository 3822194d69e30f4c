package testhost

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAttach starts a detached host as the CLI does, drives and stops it
// through a second handle made from its state directory alone.
func TestAttach(t *testing.T) {
	Require(t)
	dir := t.TempDir()
	h, err := Start(testCtx(t, time.Minute), Options{Name: "attached", Dir: dir, Detach: true, Logger: TestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })

	a, err := Attach(dir, TestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if a.PID() != h.PID() || a.SystemBusAddress() != h.SystemBusAddress() {
		t.Errorf("attached handle: PID %d, bus %s; want %d, %s", a.PID(), a.SystemBusAddress(), h.PID(), h.SystemBusAddress())
	}
	if err := a.WaitReady(testCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(mustRun(t, a, "hostname")); got != "attached" {
		t.Errorf("hostname %q", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("host still running after Stop through Attach")
	}
	if _, err := Attach(dir, TestLogger(t)); !errors.Is(err, ErrGone) {
		t.Errorf("Attach after Stop: %v, want ErrGone", err)
	}
}
