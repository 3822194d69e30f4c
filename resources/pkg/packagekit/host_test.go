package packagekit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/test/leakcheck"
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/test/testrepo"
	"github.com/mgmtconfig/mgmt/test/wait"
)

// One test host serves the package's tests.
var testHost struct {
	once sync.Once
	h    *testhost.Host
	dir  string
	err  error
}

// TestMain stops the host and fails the run if goroutines are left behind
// (other than the test hosts' spawner thread, which lives as long as the
// process by design): every connection must be closed, every transaction
// ended.
func TestMain(m *testing.M) {
	before := leakcheck.Take()
	code := m.Run()
	if testHost.h != nil {
		if err := testHost.h.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	if testHost.dir != "" {
		os.RemoveAll(testHost.dir)
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

func host(tb testing.TB) *testhost.Host {
	tb.Helper()
	testhost.RequireTools(tb, "dpkg-deb", "dpkg-scanpackages")
	testHost.once.Do(func() {
		if testHost.dir, testHost.err = os.MkdirTemp("", "mgmt-packagekit-repo-"); testHost.err != nil {
			return
		}
		if testHost.err = os.Chmod(testHost.dir, 0o755); testHost.err != nil { // apt reads it as its sandbox user
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var repo *testrepo.Repo
		if repo, testHost.err = testrepo.Build(ctx, testHost.dir, testrepo.Default()); testHost.err != nil {
			return
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		testHost.h, testHost.err = testhost.Start(ctx, testhost.Options{AptRepo: repo.Dir, Logger: log})
	})
	if testHost.err != nil {
		tb.Fatalf("test host: %v", testHost.err)
	}
	return testHost.h
}

func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func dial(tb testing.TB, h *testhost.Host) *Client {
	tb.Helper()
	c, err := Dial(testCtx(tb, 10*time.Second), h.SystemBusAddress())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func run(tb testing.TB, h *testhost.Host, argv ...string) {
	tb.Helper()
	if out, err := h.Run(testCtx(tb, time.Minute), argv...); err != nil {
		tb.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// events collects what Subscribe reports.
type events struct {
	mu  sync.Mutex
	got []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

func (e *events) count(ev Event) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, g := range e.got {
		if g == ev {
			n++
		}
	}
	return n
}

// settled waits until PackageKit runs no transaction, then until every
// signal it sent before has reached c (the reply to a call comes after
// them).
func settled(tb testing.TB, c *Client) {
	tb.Helper()
	obj := c.b.conn.Object(busName, daemonPath)
	wait.For(tb, 30*time.Second, "PackageKit to be idle", func() bool {
		var list []dbus.ObjectPath
		err := obj.CallWithContext(testCtx(tb, 10*time.Second), ifaceDaemon+".GetTransactionList", 0).Store(&list)
		return err == nil && len(list) == 0
	})
}

// Transactions against the host's PackageKit, and the daemon's signals:
// an installation reports its packages and brings UpdatesChanged; an
// installation by another client (pkcon) brings TransactionDone; the
// client's own transactions and other clients' queries never do.
// PackageKit's errors come with its code and message (DownloadPackages in
// a host without a network).
func TestTransactionsAndEvents(t *testing.T) {
	testhost.RequireTools(t, "pkcon")
	h := host(t)
	run(t, h, "dpkg", "--purge", testrepo.PkgA)
	t.Cleanup(func() { run(t, h, "dpkg", "--purge", testrepo.PkgA) })
	c := dial(t, h)
	var ev events
	defer c.Subscribe(ev.add)()

	ctx := testCtx(t, 2*time.Minute)
	pkgs, err := c.Resolve(ctx, FilterArch, []string{testrepo.PkgA, "mgmt-test-nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || pkgs[0].Name() != testrepo.PkgA || pkgs[0].Info != InfoAvailable {
		t.Fatalf("Resolve: %+v, want %s available", pkgs, testrepo.PkgA)
	}
	res, err := c.InstallPackages(ctx, FlagOnlyTrusted, []string{pkgs[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	installing := false
	for _, p := range res.Packages {
		installing = installing || (p.Name() == testrepo.PkgA && p.Info == InfoInstalling)
	}
	if !installing || res.Path == "" || res.Role != RoleInstallPackages {
		t.Errorf("InstallPackages reported %+v on %q, role %v", res.Packages, res.Path, res.Role)
	}
	res, err = c.Transact(ctx, "GetFiles", []string{pkgs[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Files); !strings.Contains(got, "/usr/share/mgmt-test-a/README") || res.Role != RoleGetFiles {
		t.Errorf("GetFiles: %s, role %v", got, res.Role)
	}
	// The roles of the transactions the pkg resource runs, as numbered.
	for _, tt := range []struct {
		method string
		args   []any
		role   Role
	}{
		{"Resolve", []any{uint64(FilterArch), []string{testrepo.PkgC}}, RoleResolve},
		{"RemovePackages", []any{uint64(FlagSimulate), []string{pkgs[0].ID}, false, false}, RoleRemovePackages},
		{"UpdatePackages", []any{uint64(FlagSimulate), []string{pkgs[0].ID}}, RoleUpdatePackages},
		{"GetFilesLocal", []any{[]string{"/srv/mgmt-testrepo/mgmt-test-c_1.0_all.deb"}}, RoleGetFilesLocal},
	} {
		res, err := c.Transact(ctx, tt.method, tt.args...)
		if err != nil {
			t.Errorf("%s: %v", tt.method, err)
		} else if res.Role != tt.role {
			t.Errorf("%s: role %d %v, want %d %v", tt.method, res.Role, res.Role, tt.role, tt.role)
		}
	}
	_, err = c.Transact(ctx, "DownloadPackages", true, []string{pkgs[0].ID})
	var pkErr *Error
	if !errors.Is(err, ErrNoNetwork) || !errors.As(err, &pkErr) || !strings.Contains(pkErr.Details, "offline") {
		t.Errorf("DownloadPackages offline: %v, want PackageKit's %v", err, ErrNoNetwork)
	}
	wait.For(t, 10*time.Second, "UpdatesChanged after an installation", func() bool { return ev.count(UpdatesChanged) > 0 })
	settled(t, c)
	if n := ev.count(TransactionDone); n != 0 {
		t.Errorf("%d TransactionDone events for the client's own transactions", n)
	}
	// Another client's query is no event; its installation is.
	run(t, h, "pkcon", "--plain", "resolve", testrepo.PkgC)
	settled(t, c)
	if n := ev.count(TransactionDone); n != 0 {
		t.Errorf("%d TransactionDone events for pkcon resolve", n)
	}
	run(t, h, "pkcon", "--plain", "--noninteractive", "install", testrepo.PkgC)
	t.Cleanup(func() { run(t, h, "dpkg", "--purge", testrepo.PkgC) })
	wait.For(t, 10*time.Second, "TransactionDone after pkcon's installation", func() bool { return ev.count(TransactionDone) > 0 })
}

// Shared keeps one connection per bus address, and dials again once it
// has closed.
func TestShared(t *testing.T) {
	h := host(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", h.SystemBusAddress())
	t.Cleanup(func() { CloseShared() })
	ctx := testCtx(t, time.Minute)
	c1, err := Shared(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Shared(ctx)
	if err != nil || c2 != c1 {
		t.Fatalf("second Shared: %p, %v; want the first, %p", c2, err, c1)
	}
	c1.Close()
	<-c1.Done()
	if _, err := c1.Resolve(ctx, FilterArch, []string{testrepo.PkgA}); !errors.Is(err, ErrClosed) {
		t.Errorf("Resolve on a closed client: %v, want %v", err, ErrClosed)
	}
	c3, err := Shared(ctx)
	if err != nil || c3 == c1 {
		t.Fatalf("Shared after Close: %p, %v; want a new client", c3, err)
	}
	if _, err := c3.Resolve(ctx, FilterArch, []string{testrepo.PkgA}); err != nil {
		t.Error(err)
	}
}

// A transaction waiting for the package manager's lock logs its progress
// at most once per ProgressInterval; closing the connection ends the
// transactions waiting on it with ErrClosed, and the daemon dying ends
// them with ErrDaemonExited, both at once rather than at their deadline.
func TestWaitingTransactionsEnd(t *testing.T) {
	h := host(t)
	run(t, h, "dpkg", "--purge", testrepo.PkgA)
	h.HoldDpkgLock(t)

	old := ProgressInterval
	ProgressInterval = 300 * time.Millisecond
	t.Cleanup(func() { ProgressInterval = old })
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	first := dial(t, h).WithLogger(log)
	second := dial(t, h)

	type result struct {
		err  error
		took time.Duration
	}
	start := func(c *Client) chan result {
		ch := make(chan result, 1)
		go func() {
			t0 := time.Now()
			_, err := c.InstallPackages(testCtx(t, 2*time.Minute), 0, []string{testrepo.PkgA + ";1.0;all;local"})
			ch <- result{err, time.Since(t0)}
		}()
		return ch
	}
	r1 := start(first)
	wait.For(t, 20*time.Second, "a progress line waiting for the lock", func() bool { return strings.Contains(logs.String(), "status=waiting-for-lock") })
	r2 := start(second) // queued behind the first

	wait.For(t, 10*time.Second, "the second transaction", func() bool {
		second.b.mu.Lock()
		defer second.b.mu.Unlock()
		return len(second.b.txs) == 1
	})
	t0 := time.Now()
	second.Close()
	select {
	case r := <-r2:
		if !errors.Is(r.err, ErrClosed) {
			t.Errorf("closed connection: %v, want %v", r.err, ErrClosed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a transaction on a closed connection still waits")
	}
	t.Logf("closed connection: transaction ended %v after Close", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	run(t, h, "systemctl", "kill", "--signal=SIGKILL", "packagekit.service")
	select {
	case r := <-r1:
		if !errors.Is(r.err, ErrDaemonExited) {
			t.Errorf("daemon killed: %v, want %v", r.err, ErrDaemonExited)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a transaction of a dead daemon still waits")
	}
	t.Logf("daemon killed: transaction ended %v after the kill", time.Since(t0).Round(time.Millisecond))

	var lines []time.Time
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(l, "packagekit progress") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, at)
	}
	for i := 1; i < len(lines); i++ {
		if d := lines[i].Sub(lines[i-1]); d < ProgressInterval {
			t.Errorf("two progress lines %v apart, want at least %v:\n%s", d, ProgressInterval, logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
