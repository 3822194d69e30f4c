package packagekit

import (
	"errors"
	"fmt"
	"testing"
)

// The enumerations print as PackageKit names them (pk-enum.c), so that
// messages carry PackageKit's own words.
func TestEnumNames(t *testing.T) {
	for _, tt := range []struct {
		got  fmt.Stringer
		want string
	}{
		{ErrPackageNotFound, "package-not-found"},
		{ErrDepResolutionFailed, "dep-resolution-failed"},
		{ErrCannotGetLock, "cannot-get-lock"},
		{ErrNotAuthorized, "not-authorized"},
		{ErrNoNetwork, "no-network"},
		{ErrLockRequired, "lock-required"},
		{ErrorCode(68), "repo-already-set"},
		{ErrorCode(99), "99"},
		{StatusWaitingForLock, "waiting-for-lock"},
		{Status(36), "run-hook"},
		{ExitSuccess, "success"},
		{ExitNeedUntrusted, "need-untrusted"},
		{InfoInstalled, "installed"},
		{InfoDowngrading, "downgrading"},
		{UpdatesChanged, "updates-changed"},
		{RoleResolve, "resolve"},
		{RoleGetFilesLocal, "get-files-local"},
		{Role(33), "upgrade-system"},
	} {
		if s := tt.got.String(); s != tt.want {
			t.Errorf("%#v prints %q, want %q", tt.got, s, tt.want)
		}
	}
}

func TestPackageID(t *testing.T) {
	p := Package{ID: "mgmt-test-ver;2.0;all;manual:local"}
	if got := []string{p.Name(), p.Version(), p.Arch(), p.Data()}; fmt.Sprint(got) != "[mgmt-test-ver 2.0 all manual:local]" {
		t.Errorf("fields %q", got)
	}
	if got := WithVersion(p.ID, "1:1.0-1"); got != "mgmt-test-ver;1:1.0-1;all;manual:local" {
		t.Errorf("WithVersion: %q", got)
	}
	if got := WithVersion("not-an-id", "1.0"); got != "not-an-id" {
		t.Errorf("WithVersion of a name: %q", got)
	}
	if got := (Package{ID: "name"}).Version(); got != "" {
		t.Errorf("Version of a bare name: %q", got)
	}
}

func TestError(t *testing.T) {
	err := fmt.Errorf("pkg: %w", &Error{Method: "InstallPackages", Code: ErrPackageNotFound, HasCode: true, Details: "Could not find package(s)", Exit: ExitFailed})
	if !errors.Is(err, ErrPackageNotFound) || errors.Is(err, ErrCannotGetLock) {
		t.Errorf("errors.Is does not follow the code: %v", err)
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.Exit != ExitFailed {
		t.Errorf("errors.As: %v", pe)
	}
	if want := "pkg: packagekit: InstallPackages: package-not-found: Could not find package(s)"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	noCode := &Error{Method: "InstallPackages", Exit: ExitNeedUntrusted}
	if errors.Is(noCode, ErrorCode(0)) || noCode.Error() != "packagekit: InstallPackages: the transaction ended with need-untrusted" {
		t.Errorf("without a code: %v", noCode)
	}
}

func TestRoleChanges(t *testing.T) {
	for r := Role(0); r <= 34; r++ {
		want := false
		switch r {
		case 10, 11, 13, 14, 15, 16, 22, 29, 32, 33: // install-files ... upgrade-system
			want = true
		}
		if r.changes() != want {
			t.Errorf("%d %v: changes() = %v", r, r, r.changes())
		}
	}
}
