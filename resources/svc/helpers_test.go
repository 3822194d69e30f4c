package svc

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/testhost"
)

// TestMain fails the run if a goroutine of this package, of godbus or of
// go-systemd is left behind: every Watch, loop and shared connection the
// tests start must have ended. (Test hosts keep a spawner goroutine for
// the life of the process, so the count of goroutines is not compared.)
func TestMain(m *testing.M) {
	code := m.Run()
	if mgmtDir != "" {
		os.RemoveAll(mgmtDir)
	}
	if code == 0 {
		var stacks string
		end := time.Now().Add(5 * time.Second)
		for {
			stacks = leaked()
			if stacks == "" || time.Now().After(end) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if stacks != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", stacks)
			code = 1
		}
		busesMu.Lock()
		if len(buses) > 0 {
			fmt.Fprintf(os.Stderr, "connections not released: %v\n", buses)
			code = 1
		}
		busesMu.Unlock()
	}
	os.Exit(code)
}

// leaked returns the stacks of goroutines that run code of this package
// or of the D-Bus libraries.
func leaked() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestMain") {
			continue
		}
		if strings.Contains(g, "mgmt/resources/svc.") || strings.Contains(g, "godbus/dbus") || strings.Contains(g, "go-systemd") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// host is a test host whose system bus the svc resources of the test talk
// to (DBUS_SYSTEM_BUS_ADDRESS), with a connection of its own for checks.
type host struct {
	t  testing.TB
	h  *testhost.Host
	sd *sddbus.Conn
}

// bootHost boots a host for the test; it skips (or fails in CI) where hosts
// cannot run.
func bootHost(t testing.TB) *host {
	t.Helper()
	testhost.Require(t)
	h := testhost.StartT(t, testhost.Options{})
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", h.SystemBusAddress())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sd, err := h.Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sd.Close)
	return &host{t: t, h: h, sd: sd}
}

func (e *host) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// unit is a small service: sleep forever, no start rate limit, installable.
func unit(service string) string {
	return "[Unit]\nDescription=mgmt svc test\nStartLimitIntervalSec=0\n\n[Service]\n" + service +
		"\n\n[Install]\nWantedBy=multi-user.target\n"
}

const sleeper = "ExecStart=/bin/sleep infinity"

// writeUnit writes a unit file into the host's /etc/systemd/system.
func (e *host) writeUnit(name, content string) {
	e.t.Helper()
	if err := e.h.WriteFile("/etc/systemd/system/"+name, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// run runs a command inside the host and returns its output, failing the
// test if it fails.
func (e *host) run(argv ...string) string {
	e.t.Helper()
	out, err := e.h.Run(e.ctx(), argv...)
	if err != nil {
		e.t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

// systemctl runs systemctl inside the host and returns its first line of
// output, whatever its exit status (is-active exits 3 for inactive).
func (e *host) systemctl(args ...string) string {
	e.t.Helper()
	out, _ := e.h.Run(e.ctx(), append([]string{"systemctl"}, args...)...)
	return strings.TrimSpace(string(out))
}

// state is what systemctl inside the host says of a unit: active state and
// enablement.
func (e *host) state(name string) string {
	return e.systemctl("is-active", name) + " " + e.systemctl("is-enabled", name)
}

// prop reads a unit property over the test's own connection.
func (e *host) prop(name, prop string) any {
	e.t.Helper()
	p, err := e.sd.GetUnitPropertyContext(e.ctx(), name, prop)
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Value.Value()
}

// invocation is the unit's InvocationID: new at each start.
func (e *host) invocation(name string) string {
	b, _ := e.prop(name, "InvocationID").([]byte)
	return hex.EncodeToString(b)
}

func (e *host) active(name string) string {
	s, _ := e.prop(name, "ActiveState").(string)
	return s
}

// job starts, stops... a unit from the test's connection and waits for it.
func (e *host) job(call func(context.Context, string, string, chan<- string) (int, error), name string) {
	e.t.Helper()
	ch := make(chan string, 1)
	ctx := e.ctx()
	if _, err := call(ctx, name, "replace", ch); err != nil {
		e.t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r != "done" {
			e.t.Fatalf("job on %s: %s", name, r)
		}
	case <-ctx.Done():
		e.t.Fatal(ctx.Err())
	}
}

// newSvc returns a validated and initialised resource named name.
func newSvc(t testing.TB, name string, r *Svc) *Svc {
	t.Helper()
	r.SetName(name)
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(restest.Env(t, "svc")); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustCheck(t testing.TB, r *Svc, apply, want bool) {
	t.Helper()
	changed, err := r.CheckApply(context.Background(), apply)
	if err != nil {
		t.Fatalf("CheckApply(apply=%v): %v", apply, err)
	}
	if changed != want {
		t.Fatalf("CheckApply(apply=%v) changed = %v, want %v", apply, changed, want)
	}
}

var (
	mgmtOnce sync.Once
	mgmtDir  string // holds the mgmt binary built for the tests; removed by TestMain
	mgmtBin  string
	mgmtErr  error
)

// installMgmt builds the mgmt command once for all the tests of the
// package and installs it in the host; it returns its path in the host.
func installMgmt(t testing.TB, h *testhost.Host) string {
	t.Helper()
	mgmtOnce.Do(func() {
		if mgmtDir, mgmtErr = os.MkdirTemp("", "mgmt-svc-test-"); mgmtErr != nil {
			return
		}
		mgmtBin = filepath.Join(mgmtDir, "mgmt")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", mgmtBin, testhost.MgmtPackage).CombinedOutput()
		if err != nil {
			mgmtErr = fmt.Errorf("go build %s: %w\n%s", testhost.MgmtPackage, err, out)
		}
	})
	if mgmtErr != nil {
		t.Fatal(mgmtErr)
	}
	path, err := h.InstallBinary(mgmtBin, "mgmt")
	if err != nil {
		t.Fatal(err)
	}
	return path
}
