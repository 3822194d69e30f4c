package svc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// refreshUnit counts its starts and reloads in files inside the host.
const refreshUnit = "ExecStartPre=/bin/sh -c 'echo start >> /run/mgmt-test-count'\n" +
	"ExecReload=/bin/sh -c 'echo reload >> /run/mgmt-test-count'\n" + sleeper

// count returns how many lines of the counter say what.
func (e *host) count(what string) int {
	b, err := e.h.ReadFile("/run/mgmt-test-count")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), what+"\n")
}

// Refresh, as the engine calls it right after CheckApply: a running
// service is restarted (or reloaded, or try-restarted) once; one that the
// CheckApply just started is not restarted again; a stopped or unmanaged
// and inactive one is never started by a refresh.
func TestRefresh(t *testing.T) {
	e := bootHost(t)
	ctx := context.Background()
	const name = "mgmt-test-refresh.service"
	e.writeUnit(name, unit(refreshUnit))
	const noReload = "mgmt-test-noreload.service"
	e.writeUnit(noReload, unit(sleeper))

	refresh := func(r *Svc) bool {
		t.Helper()
		if _, err := r.CheckApply(ctx, true); err != nil {
			t.Fatalf("CheckApply: %v", err)
		}
		changed, err := r.Refresh(ctx)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		return changed
	}
	running := newSvc(t, name, &Svc{State: StateRunning})
	defer running.Close()

	// Stopped: the CheckApply starts it; the refresh has nothing to do.
	if refresh(running) {
		t.Error("Refresh right after the start reported a change")
	}
	if n := e.count("start"); n != 1 {
		t.Errorf("%d starts after a start and a refresh, want 1", n)
	}
	// Running: restarted once.
	inv := e.invocation(name)
	if !refresh(running) {
		t.Error("Refresh of a running service reported no change")
	}
	if n := e.count("start"); n != 2 || e.invocation(name) == inv || e.active(name) != "active" {
		t.Errorf("after a refresh: %d starts, invocation changed: %v, %s; want 2 starts, a new invocation, active", n, e.invocation(name) != inv, e.active(name))
	}

	// reload and try-restart on the running service.
	reload := newSvc(t, name, &Svc{State: StateRunning, OnRefresh: RefreshReload})
	defer reload.Close()
	inv = e.invocation(name)
	if !refresh(reload) || e.count("reload") != 1 || e.invocation(name) != inv {
		t.Errorf("refresh: reload: %d reloads, invocation changed: %v; want 1 reload, same invocation", e.count("reload"), e.invocation(name) != inv)
	}
	try := newSvc(t, name, &Svc{OnRefresh: RefreshTryRestart})
	defer try.Close()
	if !refresh(try) || e.count("start") != 3 {
		t.Errorf("refresh: try-restart of a running service: %d starts, want 3", e.count("start"))
	}

	// Unmanaged state: a running service is restarted, an inactive one
	// left alone, whatever the refresh action.
	unmanaged := newSvc(t, name, &Svc{})
	defer unmanaged.Close()
	if !refresh(unmanaged) || e.count("start") != 4 {
		t.Errorf("refresh of an unmanaged running service: %d starts, want 4", e.count("start"))
	}
	e.job(e.sd.StopUnitContext, name)
	for _, action := range []string{RefreshRestart, RefreshTryRestart, RefreshReload} {
		r := newSvc(t, name, &Svc{OnRefresh: action})
		if refresh(r) {
			t.Errorf("refresh %s of an unmanaged inactive service reported a change", action)
		}
		r.Close()
	}
	// Stopped: nothing.
	stopped := newSvc(t, name, &Svc{State: StateStopped})
	defer stopped.Close()
	if refresh(stopped) {
		t.Error("refresh of a stopped service reported a change")
	}
	if e.count("start") != 4 || e.active(name) != "inactive" {
		t.Errorf("refreshes of an inactive service started it: %d starts, %s", e.count("start"), e.active(name))
	}

	// reload, on a unit that cannot.
	nr := newSvc(t, noReload, &Svc{State: StateRunning, OnRefresh: RefreshReload})
	defer nr.Close()
	mustCheck(t, nr, true, true)
	mustCheck(t, nr, true, false)
	if _, err := nr.Refresh(ctx); !errors.Is(err, ErrCannotReload) {
		t.Errorf("refresh: reload of a unit without ExecReload: %v, want ErrCannotReload", err)
	}
}

// A unit file written after systemd looked for the unit and did not find
// it, then started; a unit file changed under a running unit: CheckApply
// reloads systemd (NeedDaemonReload) and a refresh restarts it with the new
// definition.
func TestUnitFileWritten(t *testing.T) {
	e := bootHost(t)
	const name = "mgmt-test-late.service"
	r := newSvc(t, "mgmt-test-late", &Svc{State: StateRunning, Startup: StartupEnabled})
	defer r.Close()
	if _, err := r.CheckApply(context.Background(), true); !errors.Is(err, ErrUnknownUnit) {
		t.Fatalf("CheckApply before the unit file exists: %v, want ErrUnknownUnit", err)
	}
	e.writeUnit(name, unit(sleeper))
	mustCheck(t, r, true, true)
	if got := e.state(name); got != "active enabled" {
		t.Fatalf("%s is %q, want active enabled", name, got)
	}
	mustCheck(t, r, true, false)

	e.writeUnit(name, unit("Environment=MGMT_TEST=2\n"+sleeper))
	if need, _ := e.prop(name, "NeedDaemonReload").(bool); !need {
		t.Fatal("systemd does not report NeedDaemonReload after the unit file changed")
	}
	mustCheck(t, r, false, true) // noop: would reload
	if need, _ := e.prop(name, "NeedDaemonReload").(bool); !need {
		t.Fatal("a noop CheckApply reloaded systemd")
	}
	mustCheck(t, r, true, true)
	if need, _ := e.prop(name, "NeedDaemonReload").(bool); need {
		t.Fatal("NeedDaemonReload after CheckApply")
	}
	mustCheck(t, r, true, false)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := e.run("sh", "-c", "tr '\\0' '\\n' < /proc/$(systemctl show -P MainPID "+name+")/environ")
	if !strings.Contains(env, "MGMT_TEST=2") {
		t.Errorf("after the refresh the service does not run with the new unit file; its environment:\n%s", env)
	}
}

// Every svc resource of the process talks to one systemd over one
// connection; it is closed when the last resource is closed, and a new
// host's bus gets a connection of its own.
func TestSharedConnection(t *testing.T) {
	e := bootHost(t)
	names := []string{"mgmt-test-a", "mgmt-test-b", "mgmt-test-c"}
	var res []*Svc
	for _, n := range names {
		e.writeUnit(n+".service", unit(sleeper))
		r := newSvc(t, n, &Svc{State: StateRunning})
		res = append(res, r)
		restest.Loop(t, r, nil)
	}
	for _, n := range names {
		wait.Until(t, 10*time.Second, func() bool { return e.active(n+".service") == "active" }, func() string { return n + " not started" })
	}
	busesMu.Lock()
	b := buses[e.h.SystemBusAddress()]
	refs := 0
	if b != nil {
		refs = b.refs
	}
	busesMu.Unlock()
	if b == nil || refs != len(names) {
		t.Fatalf("connection for %s: %v with %d references, want one with %d", e.h.SystemBusAddress(), b, refs, len(names))
	}
	for _, r := range res {
		r.mu.Lock()
		own := r.b != b
		r.mu.Unlock()
		if own {
			t.Errorf("%s has its own connection", r.unit)
		}
	}
	// Each unit's signals reach its resource only: stop one, the others stay.
	inv := e.invocation("mgmt-test-b.service")
	e.run("systemctl", "stop", "mgmt-test-a.service")
	wait.Until(t, 10*time.Second, func() bool { return e.active("mgmt-test-a.service") == "active" }, func() string { return "a not started again" })
	if e.invocation("mgmt-test-b.service") != inv {
		t.Error("b was restarted")
	}

	e2 := bootHost(t)
	e2.writeUnit("mgmt-test-a.service", unit(sleeper))
	other := newSvc(t, "mgmt-test-a", &Svc{State: StateRunning})
	mustCheck(t, other, true, true)
	if other.b == b || other.b.addr != e2.h.SystemBusAddress() {
		t.Errorf("the second host's resource uses connection %p to %s", other.b, other.b.addr)
	}
	other.Close()
	busesMu.Lock()
	_, still := buses[e2.h.SystemBusAddress()]
	busesMu.Unlock()
	if still {
		t.Error("the connection to the second host was not closed with its last resource")
	}
}

// session: true manages a unit of the user's own systemd (here root's, in
// the host, reached through its user bus): started, enabled, and a stop
// repaired.
func TestSession(t *testing.T) {
	e := bootHost(t)
	e.run("systemctl", "start", "user@0.service")
	bus := "unix:path=" + e.h.Root() + "/run/user/0/bus"
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus)
	const name = "mgmt-test-user.service"
	content := "[Unit]\nDescription=mgmt user unit\n[Service]\n" + sleeper + "\n[Install]\nWantedBy=default.target\n"
	if err := e.h.WriteFile("/etc/systemd/user/"+name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	user := func(args ...string) string {
		out, _ := e.h.Run(e.ctx(), append([]string{"env", "XDG_RUNTIME_DIR=/run/user/0", "systemctl", "--user"}, args...)...)
		return strings.TrimSpace(string(out))
	}
	restest.Run(t, restest.Case{
		Kind: "svc",
		Res: func(t *testing.T) engine.Res {
			r := &Svc{State: StateRunning, Startup: StartupEnabled, Session: true}
			r.SetName("mgmt-test-user")
			return r
		},
		State: func(t *testing.T) string { return user("is-active", name) + " " + user("is-enabled", name) },
		Drifts: []restest.Drift{
			{Name: "systemctl --user stop", Do: func(t *testing.T) { user("stop", name) }},
		},
	})
	if got := user("is-active", name) + " " + user("is-enabled", name); got != "active enabled" {
		t.Errorf("%s in root's user manager is %q, want active enabled", name, got)
	}
	if got := e.systemctl("is-active", name); got == "active" {
		t.Errorf("%s is active in the system manager", name)
	}
}
