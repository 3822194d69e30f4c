package pkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/file"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
	"github.com/mgmtconfig/mgmt/resources/restest"
	"github.com/mgmtconfig/mgmt/resources/svc"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/wait"
)

func mustCheck(tb testing.TB, r *Pkg, apply, want bool) {
	tb.Helper()
	changed, err := r.CheckApply(testCtx(tb, 2*time.Minute), apply)
	if err != nil {
		tb.Fatalf("CheckApply(apply=%v): %v", apply, err)
	}
	if changed != want {
		tb.Fatalf("CheckApply(apply=%v) changed = %v, want %v", apply, changed, want)
	}
}

func wantStatus(tb testing.TB, h *testhost.Host, want string, names ...string) {
	tb.Helper()
	if got := status(tb, h, names...); got != want {
		tb.Fatalf("dpkg says\n%s\nwant\n%s", got, want)
	}
}

// The conformance suite, state installed: PackageKit installs the package;
// removed by hand with dpkg while watched, it is seen and reinstalled.
func TestInstalled(t *testing.T) {
	h := host(t)
	purge(t, h, pkgC)
	t.Cleanup(func() { purge(t, h, pkgC) })
	restest.Run(t, restest.Case{
		Kind: "pkg",
		Res: func(t *testing.T) engine.Res {
			p := newPkg(pkgC, "")
			p.AllowUnsupported = true
			return p
		},
		State:   func(t *testing.T) string { return status(t, h, pkgC) },
		Drifts:  []restest.Drift{{Name: "dpkg --remove", Do: func(t *testing.T) { run(t, h, "dpkg", "--remove", pkgC) }}},
		Timeout: 30 * time.Second,
	})
	wantStatus(t, h, pkgC+" installed 1.0", pkgC)
}

// The conformance suite, state uninstalled: PackageKit removes the package;
// installed by hand with apt-get while watched, it is seen and removed.
func TestUninstalled(t *testing.T) {
	h := host(t)
	aptInstall(t, h, pkgC)
	t.Cleanup(func() { purge(t, h, pkgC) })
	restest.Run(t, restest.Case{
		Kind: "pkg",
		Res: func(t *testing.T) engine.Res {
			p := newPkg(pkgC, StateUninstalled)
			p.AllowUnsupported = true
			return p
		},
		State:   func(t *testing.T) string { return status(t, h, pkgC) },
		Drifts:  []restest.Drift{{Name: "apt-get install", Do: func(t *testing.T) { aptInstall(t, h, pkgC) }}},
		Timeout: 30 * time.Second,
	})
	// Removed, not purged: dpkg keeps the conffile.
	wantStatus(t, h, pkgC+" config-files 1.0", pkgC)
}

// A group runs as the engine runs a vertex (Watch, and a check after each
// burst of events). A package removed by hand with dpkg is reinstalled,
// by the events of the removal alone: the loop makes only a few checks
// between the removal and the repair, and none before the removal.
func TestReinstallWhileRunning(t *testing.T) {
	h := host(t)
	purge(t, h, pkgA, pkgC)
	t.Cleanup(func() { purge(t, h, pkgA, pkgC) })
	g := group(t, newRes(t, pkgA, ""), newRes(t, pkgC, ""))
	var mu sync.Mutex
	var checks int
	var lastErr error
	restest.Loop(t, g, func(changed bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		checks++
		if err != nil {
			lastErr = err
		}
	})
	installed := pkgA + " installed 1.0\n" + pkgC + " installed 1.0"
	wait.Until(t, 30*time.Second, func() bool { return status(t, h, pkgA, pkgC) == installed }, func() string {
		mu.Lock()
		defer mu.Unlock()
		return "not installed: " + status(t, h, pkgA, pkgC) + "; last error: " + errString(lastErr)
	})
	// Let the events of the installation itself (dpkg's status file,
	// PackageKit's UpdatesChanged) run their checks.
	wait.Until(t, 10*time.Second, func() bool { return !g.busy() }, func() string { return "still checking" })
	mu.Lock()
	before := checks
	mu.Unlock()

	t0 := time.Now()
	run(t, h, "dpkg", "--remove", pkgC)
	removed := time.Since(t0)
	wait.Until(t, 30*time.Second, func() bool { return status(t, h, pkgC) == pkgC+" installed 1.0" }, func() string {
		return "not reinstalled: " + status(t, h, pkgC) + "; last error: " + errString(lastErr)
	})
	t.Logf("dpkg --remove took %v; reinstalled %v after it started", removed.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	wait.Until(t, 10*time.Second, func() bool { return !g.busy() }, func() string { return "still checking" })
	mu.Lock()
	defer mu.Unlock()
	if n := checks - before; n < 1 || n > 5 {
		t.Errorf("%d checks for one removal and its repair: want a few, driven by events", n)
	}
	if lastErr != nil {
		t.Errorf("a check failed: %v", lastErr)
	}
}

// A running group that installs packages is not checked against
// PackageKit again for the events of its own installation (dpkg's status
// file, PackageKit's UpdatesChanged): the run is the check's Resolve, the
// Resolve under the free filter and the InstallPackages, and nothing after.
// A change by hand after it (dpkg --remove) is a change all the same.
func TestNoResolveForOwnEvents(t *testing.T) {
	h := host(t)
	purge(t, h, benchPkgs...)
	t.Cleanup(func() { purge(t, h, benchPkgs...) })
	o := observe(t, h)
	g := group(t, newRes(t, pkgA, ""), newRes(t, pkgC, ""), newRes(t, pkgSvc, ""))
	var mu sync.Mutex
	var checks int
	var lastErr error
	restest.Loop(t, g, func(changed bool, err error) {
		mu.Lock()
		defer mu.Unlock()
		checks++
		if err != nil {
			lastErr = err
		}
	})
	installed := pkgA + " installed 1.0\n" + pkgC + " installed 1.0\n" + pkgSvc + " installed 1.0"
	wait.Until(t, 30*time.Second, func() bool { return status(t, h, benchPkgs...) == installed }, func() string {
		return "not installed: " + status(t, h, benchPkgs...)
	})
	// PackageKit's UpdatesChanged comes a little after the transaction:
	// give it the time, then let the checks it causes run.
	time.Sleep(time.Second)
	wait.Until(t, 10*time.Second, func() bool { return !g.busy() }, func() string { return "still checking" })
	mu.Lock()
	n, err := checks, lastErr
	mu.Unlock()
	if err != nil {
		t.Fatalf("a check failed: %v", err)
	}
	if n < 2 {
		t.Errorf("%d checks: want the first and at least one for the installation's own events", n)
	}
	if got, want := o.transactions(t), []packagekit.Role{roleResolve, roleResolve, roleInstall}; !reflect.DeepEqual(got, want) {
		t.Errorf("transactions (roles) %v over %d checks, want %v", got, n, want)
	}

	// Removed by hand: the database is not as the installation left it.
	o.reset(t)
	run(t, h, "dpkg", "--remove", pkgC)
	wait.Until(t, 30*time.Second, func() bool { return status(t, h, benchPkgs...) == installed }, func() string {
		return "not reinstalled: " + status(t, h, benchPkgs...)
	})
	wait.Until(t, 10*time.Second, func() bool { return !g.busy() }, func() string { return "still checking" })
	if got := o.transactions(t); len(got) < 2 || got[0] != roleResolve || !slices.Contains(got, roleInstall) {
		t.Errorf("after dpkg --remove: transactions %v, want a Resolve, then an InstallPackages", got)
	}

	mu.Lock()
	defer mu.Unlock()
	if lastErr != nil {
		t.Errorf("a check failed: %v", lastErr)
	}
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return err.Error()
}

// busy reports whether Watch has seen something that no check has looked
// at since: a check is due or under way.
func (r *Pkg) busy() bool { return r.clean.Load() != r.gen.Load()+1 }

// newest: an older version installed by hand is updated, in an
// UpdatePackages transaction.
func TestNewest(t *testing.T) {
	h := host(t)
	purge(t, h, pkgVer)
	t.Cleanup(func() { purge(t, h, pkgVer) })
	aptInstall(t, h, pkgVer+"=1.0")
	o := observe(t, h)
	p := newRes(t, pkgVer, StateNewest)
	mustCheck(t, p, false, true)
	wantStatus(t, h, pkgVer+" installed 1.0", pkgVer)
	o.reset(t)
	mustCheck(t, p, true, true)
	wantStatus(t, h, pkgVer+" installed 2.0", pkgVer)
	// The check's Resolve; a Resolve under the free filter before
	// updating (allownonfree is false); the update.
	if got := o.transactions(t); !reflect.DeepEqual(got, []packagekit.Role{roleResolve, roleResolve, roleUpdate}) {
		t.Errorf("transactions (roles) %v, want Resolve, Resolve, UpdatePackages", got)
	}
	mustCheck(t, p, true, false)
}

// An exact version is installed, downgraded to and upgraded to; a version
// the repository does not have is an error and changes nothing (the apt
// backend would install another version if asked blindly).
func TestExactVersion(t *testing.T) {
	h := host(t)
	purge(t, h, pkgVer)
	t.Cleanup(func() { purge(t, h, pkgVer) })
	for _, v := range []string{"1.0", "2.0", "1.0"} {
		p := newRes(t, pkgVer, v)
		mustCheck(t, p, false, true)
		mustCheck(t, p, true, true)
		wantStatus(t, h, pkgVer+" installed "+v, pkgVer)
		mustCheck(t, p, true, false)
	}
	p := newRes(t, pkgVer, "3.0")
	_, err := p.CheckApply(testCtx(t, time.Minute), true)
	if !errors.Is(err, ErrVersionNotFound) || !strings.Contains(err.Error(), "3.0") {
		t.Errorf("version 3.0: %v, want %v naming 3.0", err, ErrVersionNotFound)
	}
	wantStatus(t, h, pkgVer+" installed 1.0", pkgVer)
}

// Three packages grouped are checked with one Resolve and installed by
// one InstallPackages transaction; a group asking for every kind of
// change runs at most one transaction of each kind.
func TestGroupOneTransaction(t *testing.T) {
	h := host(t)
	all := []string{pkgA, pkgC, pkgSvc, pkgVer}
	purge(t, h, all...)
	t.Cleanup(func() { purge(t, h, all...) })
	o := observe(t, h)

	g := group(t, newRes(t, pkgA, ""), newRes(t, pkgC, ""), newRes(t, pkgSvc, ""))
	mustCheck(t, g, true, true)
	wantStatus(t, h, pkgA+" installed 1.0\n"+pkgC+" installed 1.0\n"+pkgSvc+" installed 1.0", pkgA, pkgC, pkgSvc)
	// The check's Resolve; a Resolve under the free filter before
	// installing (allownonfree is false); the installation.
	if got := o.transactions(t); !reflect.DeepEqual(got, []packagekit.Role{roleResolve, roleResolve, roleInstall}) {
		t.Errorf("transactions (roles) %v, want Resolve, Resolve, InstallPackages", got)
	}
	by := o.changedBy()
	if by[pkgA] == "" || by[pkgA] != by[pkgC] || by[pkgA] != by[pkgSvc] {
		t.Errorf("installed by transactions %v, want all three by one", by)
	}

	// One of each: remove a, keep c, install ver 1.0, svc newest (it is).
	aptInstall(t, h, pkgVer+"=2.0")
	o.reset(t)
	g = group(t, newRes(t, pkgA, StateUninstalled), newRes(t, pkgC, ""), newRes(t, pkgVer, "1.0"), newRes(t, pkgSvc, StateNewest))
	mustCheck(t, g, true, true)
	wantStatus(t, h, pkgA+" -\n"+pkgC+" installed 1.0\n"+pkgSvc+" installed 1.0\n"+pkgVer+" installed 1.0", pkgA, pkgC, pkgSvc, pkgVer)
	// Resolve; the removal simulated, then done; the version checked;
	// the installation.
	want := []packagekit.Role{roleResolve, roleRemove, roleRemove, roleResolve, roleInstall}
	if got := o.transactions(t); !reflect.DeepEqual(got, want) {
		t.Errorf("transactions (roles) %v, want %v", got, want)
	}
	o.reset(t)
	mustCheck(t, g, true, false)
	if got := o.transactions(t); !reflect.DeepEqual(got, []packagekit.Role{roleResolve}) {
		t.Errorf("a check with nothing to do ran %v, want one Resolve", got)
	}
}

// forgetFiles drops what automatic edges fetched, between phases of a test.
func forgetFiles() {
	files.mu.Lock()
	defer files.mu.Unlock()
	clear(files.cache)
	clear(files.pending)
}

// Automatic edges from PackageKit's file lists, compiled by the engine: a
// package comes before the file resource of the conffile it ships and
// before the svc of the unit it ships. An installed package's files come
// from GetFiles; a package not installed yet is downloaded into apt's cache
// and its .deb listed, which needs PackageKit to be online: offline, and
// for a package PackageKit cannot resolve, the package gets no edges and
// the engine logs a warning, and compiles the rest.
func TestAutoEdges(t *testing.T) {
	h := host(t)
	purge(t, h, pkgC, pkgSvc)
	t.Cleanup(func() { purge(t, h, pkgC, pkgSvc) })
	aptInstall(t, h, pkgC)
	offline(t, h) // if an earlier run left it online
	t.Cleanup(forgetFiles)

	compile := func(t *testing.T) (string, string) {
		forgetFiles()
		var vs []*engine.Vertex
		add := func(kind, name string, r engine.Res) {
			if n, ok := r.(engine.Namer); ok {
				n.SetName(name)
			}
			if p, ok := r.(*Pkg); ok {
				p.AllowUnsupported = true
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			m := engine.DefaultMeta()
			m.AutoGroup = false // edges per package; grouping is tested apart
			vs = append(vs, &engine.Vertex{Kind: kind, Name: name, Meta: m, Res: r})
		}
		add("pkg", pkgC, &Pkg{})
		add("pkg", pkgSvc, &Pkg{})
		add("pkg", pkgNone, &Pkg{})
		add("file", "conf", &file.File{Path: "/etc/mgmt-test-c.conf"})
		add("file", "data-dir", &file.File{Path: "/usr/share/mgmt-test-c/"})
		add("svc", pkgSvc, &svc.Svc{State: "running"})
		var logs bytes.Buffer
		g, err := engine.Compile(testCtx(t, time.Minute), &engine.Decl{Name: "edges", Vertices: vs},
			slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
		if err != nil {
			t.Fatal(err)
		}
		return g.String(), logs.String()
	}

	t.Run("offline", func(t *testing.T) {
		got, logs := compile(t)
		want := `Vertices(6):
  file[conf]
  file[data-dir]
  pkg[mgmt-test-c]
  pkg[mgmt-test-nonexistent]
  pkg[mgmt-test-svc]
  svc[mgmt-test-svc]
Edges(1):
  pkg[mgmt-test-c] -> file[conf]
`
		if got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
		for _, w := range []string{"res=pkg[mgmt-test-svc]", "no-network", "res=pkg[" + pkgNone + "]", "package-not-found"} {
			if !strings.Contains(logs, w) {
				t.Errorf("warnings do not mention %q:\n%s", w, logs)
			}
		}
		ctx := testCtx(t, time.Minute)
		_, err := newRes(t, pkgSvc, "").AutoEdges(ctx)
		if !errors.Is(err, packagekit.ErrNoNetwork) {
			t.Errorf("offline, a package not installed: %v, want PackageKit's %v", err, packagekit.ErrNoNetwork)
		}
		_, err = newRes(t, pkgNone, "").AutoEdges(ctx)
		if !errors.Is(err, packagekit.ErrPackageNotFound) || !strings.Contains(err.Error(), pkgNone) {
			t.Errorf("unknown package: %v, want %v naming it", err, packagekit.ErrPackageNotFound)
		}
	})

	t.Run("online", func(t *testing.T) {
		online(t, h)
		got, logs := compile(t)
		want := `Vertices(6):
  file[conf]
  file[data-dir]
  pkg[mgmt-test-c]
  pkg[mgmt-test-nonexistent]
  pkg[mgmt-test-svc]
  svc[mgmt-test-svc]
Edges(2):
  pkg[mgmt-test-c] -> file[conf]
  pkg[mgmt-test-svc] -> svc[mgmt-test-svc]
`
		if got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
		if strings.Contains(logs, "res=pkg[mgmt-test-svc]") || !strings.Contains(logs, "res=pkg["+pkgNone+"]") {
			t.Errorf("warnings:\n%s\nwant one, for %s only", logs, pkgNone)
		}
		wantStatus(t, h, pkgSvc+" -", pkgSvc) // downloaded, not installed
	})
}

// online gives the host a default route (through a veth pair inside its
// own network namespace, going nowhere) and waits until PackageKit
// considers itself online; the pair is removed at the end of the test, and
// PackageKit is waited for to see it offline again.
func online(t *testing.T, h *testhost.Host) {
	t.Helper()
	h.Run(testCtx(t, 10*time.Second), "ip", "link", "del", "mgmt-v0") // left by a run that was killed
	t.Cleanup(func() { offline(t, h) })
	for _, argv := range [][]string{
		{"ip", "link", "add", "mgmt-v0", "type", "veth", "peer", "name", "mgmt-v1"},
		{"ip", "link", "set", "mgmt-v0", "up"},
		{"ip", "link", "set", "mgmt-v1", "up"},
		{"ip", "addr", "add", "10.250.0.1/24", "dev", "mgmt-v0"},
		{"ip", "route", "add", "default", "via", "10.250.0.2", "dev", "mgmt-v0"},
	} {
		run(t, h, argv...)
	}
	wait.Until(t, 10*time.Second, func() bool { return networkState(t, h) >= pkNetworkOnline },
		func() string { return fmt.Sprintf("PackageKit's NetworkState is %d, not online", networkState(t, h)) })
}

// offline removes the host's default route and the veth pair of online,
// and waits until PackageKit has seen it: its network monitor learns of
// route changes asynchronously, and a check made before that still finds
// it online.
func offline(t *testing.T, h *testhost.Host) {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	h.Run(ctx, "ip", "link", "del", "mgmt-v0")
	h.Run(ctx, "ip", "route", "del", "default")
	wait.Until(t, 10*time.Second, func() bool { return networkState(t, h) == pkNetworkOffline },
		func() string { return fmt.Sprintf("PackageKit's NetworkState is %d, not offline", networkState(t, h)) })
}

// PackageKit's PkNetworkEnum: unknown, offline, online, then kinds of
// online (wired, wifi, mobile).
const (
	pkNetworkOffline = 1
	pkNetworkOnline  = 2
)

// networkState is PackageKit's NetworkState property, read inside the host.
func networkState(t *testing.T, h *testhost.Host) int {
	t.Helper()
	out := run(t, h, "busctl", "get-property", "org.freedesktop.PackageKit", "/org/freedesktop/PackageKit",
		"org.freedesktop.PackageKit", "NetworkState")
	var n int
	if _, err := fmt.Sscanf(out, "u %d", &n); err != nil {
		t.Fatalf("NetworkState: %q: %v", out, err)
	}
	return n
}

// PackageKit's errors fail the check with PackageKit's own code and
// message; nothing waits forever.
func TestErrors(t *testing.T) {
	h := host(t)
	ctx := func(t *testing.T) context.Context { return testCtx(t, time.Minute) }

	t.Run("not found", func(t *testing.T) {
		p := newRes(t, pkgNone, "")
		for _, apply := range []bool{false, true} {
			changed, err := p.CheckApply(ctx(t), apply)
			var pkErr *packagekit.Error
			if changed || !errors.Is(err, packagekit.ErrPackageNotFound) || !errors.As(err, &pkErr) || !strings.Contains(err.Error(), pkgNone) {
				t.Errorf("apply=%v: %v, %v; want PackageKit's %v naming %s", apply, changed, err, packagekit.ErrPackageNotFound, pkgNone)
			}
			t.Logf("apply=%v: %v", apply, err)
		}
	})

	t.Run("dependency not installable", func(t *testing.T) {
		p := newRes(t, pkgBroken, "")
		_, err := p.CheckApply(ctx(t), true)
		var pkErr *packagekit.Error
		if !errors.As(err, &pkErr) || !errors.Is(err, packagekit.ErrDepResolutionFailed) || !strings.Contains(err.Error(), "mgmt-test-missing") {
			t.Errorf("%v; want PackageKit's %v naming mgmt-test-missing", err, packagekit.ErrDepResolutionFailed)
		}
		t.Logf("%v", err)
		wantStatus(t, h, pkgBroken+" -", pkgBroken)
	})

	t.Run("removal would remove dependents", func(t *testing.T) {
		aptInstall(t, h, pkgB)
		t.Cleanup(func() { purge(t, h, pkgB, pkgA) })
		p := newRes(t, pkgA, StateUninstalled)
		_, err := p.CheckApply(ctx(t), true)
		if !errors.Is(err, ErrWouldRemoveOthers) || !strings.Contains(err.Error(), pkgB) {
			t.Errorf("%v; want %v naming %s", err, ErrWouldRemoveOthers, pkgB)
		}
		t.Logf("%v", err)
		wantStatus(t, h, pkgA+" installed 1.0\n"+pkgB+" installed 1.0", pkgA, pkgB)
		// Both declared uninstalled: removed together.
		g := group(t, newRes(t, pkgA, StateUninstalled), newRes(t, pkgB, StateUninstalled))
		mustCheck(t, g, true, true)
		wantStatus(t, h, pkgA+" -\n"+pkgB+" -", pkgA, pkgB)
	})

	t.Run("unsupported", func(t *testing.T) {
		purge(t, h, pkgA)
		p := newPkg(pkgA, "")
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		_, err := p.CheckApply(ctx(t), true)
		if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "allowunsupported") {
			t.Errorf("%v; want %v naming allowunsupported", err, ErrNotAllowed)
		}
		t.Logf("%v", err)
		wantStatus(t, h, pkgA+" -", pkgA)
	})

	t.Run("lock held by another package manager", func(t *testing.T) {
		purge(t, h, pkgA)
		h.HoldDpkgLock(t)
		p := newRes(t, pkgA, "")
		// PackageKit waits for the lock a while, then gives up with its
		// own error.
		_, err := p.CheckApply(ctx(t), true)
		if !errors.Is(err, packagekit.ErrCannotGetLock) || !strings.Contains(err.Error(), "lock") {
			t.Errorf("%v; want PackageKit's %v", err, packagekit.ErrCannotGetLock)
		}
		t.Logf("%v", err)
		wantStatus(t, h, pkgA+" -", pkgA)
	})

	t.Run("daemon not answering", func(t *testing.T) {
		// PackageKit stopped dead (SIGSTOP): a check with a deadline
		// returns at its deadline.
		run(t, h, "systemctl", "start", "packagekit.service")
		run(t, h, "systemctl", "kill", "--signal=SIGSTOP", "packagekit.service")
		t.Cleanup(func() { run(t, h, "systemctl", "kill", "--signal=SIGCONT", "packagekit.service") })
		p := newRes(t, pkgA, "")
		short, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := p.CheckApply(short, true)
		if took := time.Since(t0); !errors.Is(err, context.DeadlineExceeded) || took > 1500*time.Millisecond {
			t.Errorf("with a 1 s deadline: %v after %v", err, took)
		}
		t.Logf("after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	})
}
