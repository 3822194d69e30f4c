package pkg

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/fswatch"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// The test packages (see test/testrepo), and one whose dependency exists
// nowhere.
const (
	pkgA      = testrepo.PkgA
	pkgB      = testrepo.PkgB
	pkgC      = testrepo.PkgC
	pkgSvc    = testrepo.PkgSvc
	pkgVer    = testrepo.PkgVer
	pkgBroken = "mgmt-test-broken"
	pkgNone   = "mgmt-test-nonexistent"
)

// One test host, with PackageKit and the local repository, serves every
// test of the package that needs one: booting is the slow part. Tests run
// one after the other and put back the packages they touch.
var shared struct {
	once sync.Once
	h    *testhost.Host
	dir  string
	err  error
}

// TestMain stops the shared host, closes the shared bus connections, and
// fails the run if goroutines are left behind (other than the test hosts'
// spawner thread, which lives as long as the process by design).
func TestMain(m *testing.M) {
	if _, err := fswatch.Default(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	before := leakcheck.Take()
	code := m.Run()
	if shared.h != nil {
		if err := shared.h.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	if err := packagekit.CloseShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if code == 0 {
		// The test hosts' spawner thread lives as long as the process.
		if left := before.Left(5*time.Second, "test/testhost.init."); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines leaked:\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// host returns the shared test host, booting it on first use, and points
// the package at it: the system bus address and the root under which the
// package database is watched. It skips the test where hosts cannot run.
func host(tb testing.TB) *testhost.Host {
	tb.Helper()
	// ip: the veth pair that takes PackageKit online; busctl: its NetworkState.
	testhost.RequireTools(tb, "dpkg-deb", "dpkg-scanpackages", "ip", "busctl")
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "mgmt-pkg-repo-")
		if shared.err != nil {
			return
		}
		// apt reads the repository as its sandbox user.
		if shared.err = os.Chmod(shared.dir, 0o755); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pkgs := append(testrepo.Default(), testrepo.Package{
			Name: pkgBroken, Version: "1.0", Depends: []string{"mgmt-test-missing"},
			Files: []testrepo.File{{Path: "/usr/share/mgmt-test-broken/README", Data: "never installed\n"}},
		})
		var repo *testrepo.Repo
		if repo, shared.err = testrepo.Build(ctx, shared.dir, pkgs); shared.err != nil {
			return
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		shared.h, shared.err = testhost.Start(ctx, testhost.Options{AptRepo: repo.Dir, Logger: log})
	})
	if shared.err != nil {
		tb.Fatalf("test host: %v", shared.err)
	}
	tb.Setenv("DBUS_SYSTEM_BUS_ADDRESS", shared.h.SystemBusAddress())
	dbRoot = shared.h.Root()
	tb.Cleanup(func() { dbRoot = "" })
	return shared.h
}

func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// run runs a command inside the host and fails the test if it fails.
func run(tb testing.TB, h *testhost.Host, argv ...string) string {
	tb.Helper()
	out, err := h.Run(testCtx(tb, time.Minute), argv...)
	if err != nil {
		tb.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return string(out)
}

// status is dpkg's view of packages inside the host, one "name status
// version" line each; "name -" for a package dpkg does not have.
func status(tb testing.TB, h *testhost.Host, names ...string) string {
	tb.Helper()
	var lines []string
	for _, n := range names {
		out, err := h.Run(testCtx(tb, 30*time.Second), "dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", n)
		st := strings.TrimSpace(string(out))
		if err != nil || strings.HasPrefix(st, "not-installed") || st == "" {
			st = "-"
		}
		lines = append(lines, n+" "+st)
	}
	return strings.Join(lines, "\n")
}

// purge removes packages by hand (dpkg), whatever state they are in.
func purge(tb testing.TB, h *testhost.Host, names ...string) {
	tb.Helper()
	run(tb, h, append([]string{"dpkg", "--purge"}, names...)...)
}

// aptInstall installs packages by hand (apt-get, not PackageKit).
func aptInstall(tb testing.TB, h *testhost.Host, specs ...string) {
	tb.Helper()
	run(tb, h, append([]string{"apt-get", "install", "-y", "-q", "--allow-downgrades"}, specs...)...)
}

// newRes returns a validated, initialised pkg resource for a test.
func newRes(tb testing.TB, name, state string) *Pkg {
	tb.Helper()
	p := newPkg(name, state)
	p.AllowUnsupported = true // the local repository is not the distribution's
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	if err := p.Init(restest.Env(tb, "pkg")); err != nil {
		tb.Fatal(err)
	}
	return p
}

// group returns the resource that Group makes of packages.
func group(tb testing.TB, ps ...*Pkg) *Pkg {
	tb.Helper()
	others := make([]engine.Res, len(ps)-1)
	for i, p := range ps[1:] {
		others[i] = p
	}
	g, err := ps[0].Group(others)
	if err != nil {
		tb.Fatal(err)
	}
	gp := g.(*Pkg)
	if err := gp.Validate(); err != nil {
		tb.Fatal(err)
	}
	if err := gp.Init(restest.Env(tb, "pkg")); err != nil {
		tb.Fatal(err)
	}
	return gp
}

// observer records, from a bus connection of its own, the transactions
// PackageKit runs: their roles, and which packages each one installed,
// removed or updated.
type observer struct {
	conn *dbus.Conn
	sigs chan *dbus.Signal

	mu       sync.Mutex // guards the fields below
	finished []dbus.ObjectPath
	roles    map[dbus.ObjectPath]packagekit.Role
	changed  map[string]dbus.ObjectPath // package name -> transaction that installed/removed/updated it
}

const (
	roleInstall = packagekit.RoleInstallPackages
	roleRemove  = packagekit.RoleRemovePackages
	roleResolve = packagekit.RoleResolve
	roleUpdate  = packagekit.RoleUpdatePackages
)

func observe(tb testing.TB, h *testhost.Host) *observer {
	tb.Helper()
	ctx := testCtx(tb, 10*time.Second)
	conn, err := h.DialBus(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender("org.freedesktop.PackageKit")); err != nil {
		tb.Fatal(err)
	}
	o := &observer{conn: conn, sigs: make(chan *dbus.Signal, 1024), roles: map[dbus.ObjectPath]packagekit.Role{}, changed: map[string]dbus.ObjectPath{}}
	conn.Signal(o.sigs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range o.sigs {
			o.record(s)
		}
	}()
	tb.Cleanup(func() {
		conn.Close() // closes o.sigs
		<-done
	})
	return o
}

func (o *observer) record(s *dbus.Signal) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch s.Name {
	case "sync":
		close(s.Body[0].(chan struct{}))
	case "org.freedesktop.PackageKit.Transaction.Finished":
		o.finished = append(o.finished, s.Path)
	case "org.freedesktop.PackageKit.Transaction.Package":
		var info uint32
		var id, summary string
		if dbus.Store(s.Body, &info, &id, &summary) == nil {
			switch packagekit.Info(info) {
			case packagekit.InfoInstalling, packagekit.InfoRemoving, packagekit.InfoUpdating, packagekit.InfoDowngrading:
				o.changed[packagekit.Package{ID: id}.Name()] = s.Path
			}
		}
	case "org.freedesktop.DBus.Properties.PropertiesChanged":
		var iface string
		var props map[string]dbus.Variant
		var inv []string
		if dbus.Store(s.Body, &iface, &props, &inv) == nil {
			if v, ok := props["Role"]; ok {
				if r, ok := v.Value().(uint32); ok && r != 0 {
					o.roles[s.Path] = packagekit.Role(r)
				}
			}
		}
	}
}

// sync returns once every signal PackageKit sent before now has been
// recorded: D-Bus keeps the order of the messages from one sender to one
// receiver, so the reply to a call made now comes after them.
func (o *observer) sync(tb testing.TB) {
	tb.Helper()
	var v dbus.Variant
	err := o.conn.Object("org.freedesktop.PackageKit", "/org/freedesktop/PackageKit").CallWithContext(testCtx(tb, 10*time.Second),
		"org.freedesktop.DBus.Properties.Get", 0, "org.freedesktop.PackageKit", "VersionMajor").Store(&v)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	o.sigs <- &dbus.Signal{Name: "sync", Body: []any{done}}
	<-done
}

// reset forgets what was recorded so far.
func (o *observer) reset(tb testing.TB) {
	o.sync(tb)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = nil
	clear(o.roles)
	clear(o.changed)
}

// transactions returns the roles of the transactions finished since the
// last reset, in order.
func (o *observer) transactions(tb testing.TB) []packagekit.Role {
	o.sync(tb)
	o.mu.Lock()
	defer o.mu.Unlock()
	var roles []packagekit.Role
	for _, p := range o.finished {
		roles = append(roles, o.roles[p])
	}
	return roles
}

func (o *observer) changedBy() map[string]dbus.ObjectPath {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string]dbus.ObjectPath, len(o.changed))
	for k, v := range o.changed {
		m[k] = v
	}
	return m
}
