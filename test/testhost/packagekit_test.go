package testhost

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mgmtconfig/mgmt/test/testrepo"
)

// dpkgStatus returns dpkg's status and version of a package inside the
// host, "" when dpkg does not know it.
func dpkgStatus(t *testing.T, h *Host, pkg string) string {
	t.Helper()
	out, err := h.Run(testCtx(t, 30*time.Second), "dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", pkg)
	if err != nil {
		return ""
	}
	return string(out)
}

// TestPackageKit installs and removes a package of the local test
// repository through PackageKit (activated on the host's system bus), and
// checks that the real machine is untouched.
func TestPackageKit(t *testing.T) {
	RequireTools(t, "pkcon", "dpkg-scanpackages")
	repo := testrepo.BuildT(t)
	h := StartT(t, Options{AptRepo: repo.Dir})

	// The host's apt sees only the test repository.
	policy := mustRun(t, h, "apt-cache", "policy")
	if !strings.Contains(policy, "file:"+AptRepoDir) || strings.Contains(policy, "debian.org") {
		t.Errorf("apt sources inside:\n%s", policy)
	}
	if got := mustRun(t, h, "apt-cache", "madison", testrepo.PkgVer); !strings.Contains(got, testrepo.VerOld) || !strings.Contains(got, testrepo.VerNew) {
		t.Errorf("apt-cache madison %s:\n%s", testrepo.PkgVer, got)
	}

	t0 := time.Now()
	mustRun(t, h, "pkcon", "--noninteractive", "--plain", "install", testrepo.PkgB)
	t.Logf("pkcon install %s: %v", testrepo.PkgB, time.Since(t0))
	for _, p := range []string{testrepo.PkgA, testrepo.PkgB} {
		if st := dpkgStatus(t, h, p); st != "installed 1.0" {
			t.Errorf("after install, %s is %q, want installed 1.0", p, st)
		}
	}
	if b, err := h.ReadFile("/usr/share/mgmt-test-b/README"); err != nil || string(b) != "mgmt test package B\n" {
		t.Errorf("inside: README of %s: %q, %v", testrepo.PkgB, b, err)
	}
	if out := mustRun(t, h, "systemctl", "is-active", "packagekit.service"); out != "active\n" {
		t.Errorf("packagekit.service is %q, want active (activated through the bus)", out)
	}
	for _, p := range []string{"/usr/share/mgmt-test-b", "/usr/share/mgmt-test-a", "/var/lib/dpkg/info/mgmt-test-b.list"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists on the real machine", p)
		}
	}

	t0 = time.Now()
	mustRun(t, h, "pkcon", "--noninteractive", "--plain", "remove", testrepo.PkgB)
	t.Logf("pkcon remove %s: %v", testrepo.PkgB, time.Since(t0))
	if st := dpkgStatus(t, h, testrepo.PkgB); strings.HasPrefix(st, "installed") {
		t.Errorf("after remove, %s is %q", testrepo.PkgB, st)
	}
	if _, err := h.ReadFile("/usr/share/mgmt-test-b/README"); err == nil {
		t.Errorf("inside: README of %s still there after remove", testrepo.PkgB)
	}
}

// pkRun runs one PackageKit transaction method over conn and returns the
// package ids of its Package signals, failing the test on ErrorCode or an
// exit other than success.
func pkRun(t *testing.T, conn *dbus.Conn, method string, args ...any) []string {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	var tx dbus.ObjectPath
	pk := conn.Object("org.freedesktop.PackageKit", "/org/freedesktop/PackageKit")
	if err := pk.CallWithContext(ctx, "org.freedesktop.PackageKit.CreateTransaction", 0).Store(&tx); err != nil {
		t.Fatal(err)
	}
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchObjectPath(tx)); err != nil {
		t.Fatal(err)
	}
	defer conn.RemoveMatchSignalContext(ctx, dbus.WithMatchObjectPath(tx))
	signals := make(chan *dbus.Signal, 256)
	conn.Signal(signals)
	defer conn.RemoveSignal(signals)
	if err := conn.Object("org.freedesktop.PackageKit", tx).CallWithContext(ctx,
		"org.freedesktop.PackageKit.Transaction."+method, 0, args...).Err; err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var ids []string
	for {
		select {
		case s := <-signals:
			if s.Path != tx {
				continue
			}
			switch s.Name {
			case "org.freedesktop.PackageKit.Transaction.Package":
				ids = append(ids, s.Body[1].(string))
			case "org.freedesktop.PackageKit.Transaction.ErrorCode":
				t.Fatalf("%s: error %v", method, s.Body)
			case "org.freedesktop.PackageKit.Transaction.Finished":
				if exit := s.Body[0].(uint32); exit != 1 { // PK_EXIT_ENUM_SUCCESS
					t.Fatalf("%s: exit %d", method, exit)
				}
				return ids
			}
		case <-ctx.Done():
			t.Fatalf("%s: %v", method, ctx.Err())
		}
	}
}

// TestPackageKitFromOutside talks to the host's PackageKit from the real
// machine over the host's system bus, as the pkg resource's tests will:
// resolve both versions of a package, install the older one exactly, and
// see dpkg inside agree.
func TestPackageKitFromOutside(t *testing.T) {
	RequireTools(t, "dpkg-scanpackages")
	repo := testrepo.BuildT(t)
	h := StartT(t, Options{AptRepo: repo.Dir})
	conn, err := h.DialBus(testCtx(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const filterNone = uint64(1 << 1) // PK_FILTER_ENUM_NONE
	ids := pkRun(t, conn, "Resolve", filterNone, []string{testrepo.PkgVer})
	// The apt backend resolves a name to its candidate: the newest version.
	newest := testrepo.PkgVer + ";" + testrepo.VerNew + ";"
	if len(ids) == 0 || !strings.HasPrefix(ids[0], newest) {
		t.Fatalf("Resolve %s: %v, want %s...", testrepo.PkgVer, ids, newest)
	}
	// An exact older version is named by its package id.
	old := strings.Replace(ids[0], ";"+testrepo.VerNew+";", ";"+testrepo.VerOld+";", 1)
	pkRun(t, conn, "InstallPackages", uint64(0), []string{old})
	if st := dpkgStatus(t, h, testrepo.PkgVer); st != "installed "+testrepo.VerOld {
		t.Errorf("after installing %s, dpkg says %q", old, st)
	}
	if b, err := h.ReadFile("/usr/share/mgmt-test-ver/version"); err != nil || string(b) != testrepo.VerOld+"\n" {
		t.Errorf("inside: version file %q, %v", b, err)
	}
}
