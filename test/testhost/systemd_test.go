package testhost

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

func waitJob(t *testing.T, ctx context.Context, ch <-chan string, what string) {
	t.Helper()
	select {
	case r := <-ch:
		if r != "done" {
			t.Fatalf("%s: job result %q", what, r)
		}
	case <-ctx.Done():
		t.Fatalf("%s: %v", what, ctx.Err())
	}
}

func activeState(t *testing.T, ctx context.Context, conn *sddbus.Conn, unit string) string {
	t.Helper()
	p, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := p.Value.Value().(string)
	return s
}

// TestSystemdOverDBus drives the host's systemd from outside, with
// go-systemd over the host's system bus: a transient unit and a unit file,
// started and stopped, and the unit's PropertiesChanged signals received.
func TestSystemdOverDBus(t *testing.T) {
	h := StartT(t, Options{})
	ctx := testCtx(t, time.Minute)
	conn, err := h.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Watch the file unit's state changes from outside as well.
	const fileUnit = "mgmt-testhost-file.service"
	sig, err := h.DialBus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	unitPath := dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + sddbus.PathBusEscape(fileUnit))
	if err := sig.AddMatchSignalContext(ctx, dbus.WithMatchObjectPath(unitPath),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 64)
	sig.Signal(signals)
	// systemd sends unit signals only while some client is subscribed.
	if err := sig.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").CallWithContext(ctx,
		"org.freedesktop.systemd1.Manager.Subscribe", 0).Err; err != nil {
		t.Fatal(err)
	}

	const transient = "mgmt-testhost-transient.service"
	ch := make(chan string, 1)
	props := []sddbus.Property{
		sddbus.PropDescription("mgmt testhost transient unit"),
		sddbus.PropExecStart([]string{"/bin/sleep", "infinity"}, false),
	}
	if _, err := conn.StartTransientUnitContext(ctx, transient, "replace", props, ch); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, ch, "start "+transient)
	if s := activeState(t, ctx, conn, transient); s != "active" {
		t.Errorf("%s is %s, want active", transient, s)
	}
	if got := mustRun(t, h, "systemctl", "is-active", transient); got != "active\n" {
		t.Errorf("inside: %s is %q", transient, got)
	}
	if _, err := conn.StopUnitContext(ctx, transient, "replace", ch); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, ch, "stop "+transient)
	if s := activeState(t, ctx, conn, transient); s != "inactive" {
		t.Errorf("%s is %s after stop, want inactive", transient, s)
	}

	unit := "[Unit]\nDescription=mgmt testhost unit file\n\n[Service]\nExecStart=/bin/sleep infinity\n"
	if err := h.WriteFile("/etc/systemd/system/"+fileUnit, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := conn.ReloadContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.StartUnitContext(ctx, fileUnit, "replace", ch); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, ch, "start "+fileUnit)
	pid, err := conn.GetServicePropertyContext(ctx, fileUnit, "MainPID")
	if err != nil {
		t.Fatal(err)
	}
	if comm := mustRun(t, h, "cat", fmt.Sprintf("/proc/%v/comm", pid.Value.Value())); comm != "sleep\n" {
		t.Errorf("%s's MainPID %v runs %q", fileUnit, pid.Value, comm)
	}
	if _, err := conn.StopUnitContext(ctx, fileUnit, "replace", ch); err != nil {
		t.Fatal(err)
	}
	waitJob(t, ctx, ch, "stop "+fileUnit)
	if s := activeState(t, ctx, conn, fileUnit); s != "inactive" {
		t.Errorf("%s is %s after stop, want inactive", fileUnit, s)
	}

	// The unit went active and then inactive: both were signalled.
	sigCtx := testCtx(t, 10*time.Second)
	seen := map[string]bool{}
	for !seen["active"] || !seen["inactive"] {
		select {
		case s := <-signals:
			if len(s.Body) < 2 || s.Body[0] != "org.freedesktop.systemd1.Unit" {
				continue
			}
			if changed, ok := s.Body[1].(map[string]dbus.Variant); ok {
				if v, ok := changed["ActiveState"]; ok {
					seen[strings.Trim(v.String(), `"`)] = true
				}
			}
		case <-sigCtx.Done():
			t.Fatalf("PropertiesChanged of %s: saw %v: %v", fileUnit, seen, sigCtx.Err())
		}
	}
}
