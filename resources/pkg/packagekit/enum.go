package packagekit

import "strconv"

// Filter is a bitfield of PackageKit filters (PkFilterEnum bits), for
// Resolve and the other queries.
type Filter uint64

// Filters, as PackageKit numbers them (the bit of each PkFilterEnum value).
const (
	FilterNone         Filter = 1 << 1
	FilterInstalled    Filter = 1 << 2
	FilterNotInstalled Filter = 1 << 3
	FilterFree         Filter = 1 << 8  // free software only
	FilterSupported    Filter = 1 << 12 // packages the distribution supports only
	FilterNewest       Filter = 1 << 16
	FilterArch         Filter = 1 << 18 // the native architecture (and "all") only
	FilterNotSource    Filter = 1 << 21
)

// Flags is a bitfield of transaction flags (PkTransactionFlagEnum bits).
type Flags uint64

// Transaction flags.
const (
	FlagOnlyTrusted    Flags = 1 << 1 // refuse packages that are not signed by a trusted key
	FlagSimulate       Flags = 1 << 2
	FlagOnlyDownload   Flags = 1 << 3
	FlagAllowReinstall Flags = 1 << 4
	FlagJustReinstall  Flags = 1 << 5
	FlagAllowDowngrade Flags = 1 << 6
)

// Info says what a Package signal is about (PkInfoEnum).
type Info uint32

// Info values used by this package's callers; the others print as numbers.
const (
	InfoInstalled   Info = 1
	InfoAvailable   Info = 2
	InfoInstalling  Info = 12
	InfoRemoving    Info = 13
	InfoFinished    Info = 18
	InfoUpdating    Info = 11
	InfoDowngrading Info = 20
)

var infoNames = []string{
	"unknown", "installed", "available", "low", "enhancement", "normal", "bugfix", "important",
	"security", "blocked", "downloading", "updating", "installing", "removing", "cleanup",
	"obsoleting", "collection-installed", "collection-available", "finished", "reinstalling",
	"downgrading", "preparing", "decompressing", "untrusted", "trusted", "unavailable", "critical",
}

func (i Info) String() string { return name(infoNames, uint32(i)) }

// Exit is how a transaction ended (PkExitEnum).
type Exit uint32

// Exit values.
const (
	ExitUnknown             Exit = 0
	ExitSuccess             Exit = 1
	ExitFailed              Exit = 2
	ExitCancelled           Exit = 3
	ExitKeyRequired         Exit = 4
	ExitEulaRequired        Exit = 5
	ExitKilled              Exit = 6
	ExitMediaChangeRequired Exit = 7
	ExitNeedUntrusted       Exit = 8
)

var exitNames = []string{
	"unknown", "success", "failed", "cancelled", "key-required", "eula-required", "killed",
	"media-change-required", "need-untrusted", "cancelled-priority", "skip-transaction", "repair-required",
}

func (e Exit) String() string { return name(exitNames, uint32(e)) }

// Status is what a transaction is doing (PkStatusEnum), for progress logs.
type Status uint32

// Status values used by this package's callers.
const (
	StatusWaitingForLock Status = 30
	StatusWaitingForAuth Status = 31
)

var statusNames = []string{
	"unknown", "wait", "setup", "running", "query", "info", "remove", "refresh-cache", "download",
	"install", "update", "cleanup", "obsolete", "dep-resolve", "sig-check", "test-commit", "commit",
	"request", "finished", "cancel", "download-repository", "download-packagelist", "download-filelist",
	"download-changelog", "download-group", "download-updateinfo", "repackaging", "loading-cache",
	"scan-applications", "generate-package-list", "waiting-for-lock", "waiting-for-auth",
	"scan-process-list", "check-executable-files", "check-libraries", "copy-files", "run-hook",
}

func (s Status) String() string { return name(statusNames, uint32(s)) }

// ErrorCode is PackageKit's error enumeration (PkErrorEnum), as sent in a
// transaction's ErrorCode signal. It is an error itself, so that callers can
// match it with errors.Is(err, packagekit.ErrPackageNotFound).
type ErrorCode uint32

// Error codes callers are likely to match.
const (
	ErrNoNetwork               ErrorCode = 2
	ErrNotSupported            ErrorCode = 3
	ErrInternal                ErrorCode = 4
	ErrPackageIDInvalid        ErrorCode = 6
	ErrPackageNotInstalled     ErrorCode = 7
	ErrPackageNotFound         ErrorCode = 8
	ErrPackageAlreadyInstalled ErrorCode = 9
	ErrPackageDownloadFailed   ErrorCode = 10
	ErrDepResolutionFailed     ErrorCode = 13
	ErrTransactionError        ErrorCode = 16
	ErrTransactionCancelled    ErrorCode = 17
	ErrNoCache                 ErrorCode = 18
	ErrCannotGetLock           ErrorCode = 26
	ErrPackageConflicts        ErrorCode = 36
	ErrRepoNotAvailable        ErrorCode = 37
	ErrNotAuthorized           ErrorCode = 48
	ErrPackageFailedToInstall  ErrorCode = 58
	ErrPackageFailedToRemove   ErrorCode = 59
	ErrLockRequired            ErrorCode = 67
)

var errorNames = []string{
	"unknown", "oom", "no-network", "not-supported", "internal-error", "gpg-failure",
	"package-id-invalid", "package-not-installed", "package-not-found", "package-already-installed",
	"package-download-failed", "group-not-found", "group-list-invalid", "dep-resolution-failed",
	"filter-invalid", "create-thread-failed", "transaction-error", "transaction-cancelled",
	"no-cache", "repo-not-found", "cannot-remove-system-package", "process-kill",
	"failed-initialization", "failed-finalise", "failed-config-parsing", "cannot-cancel",
	"cannot-get-lock", "no-packages-to-update", "cannot-write-repo-config", "local-install-failed",
	"bad-gpg-signature", "missing-gpg-signature", "cannot-install-source-package",
	"repo-configuration-error", "no-license-agreement", "file-conflicts", "package-conflicts",
	"repo-not-available", "invalid-package-file", "package-install-blocked", "package-corrupt",
	"all-packages-already-installed", "file-not-found", "no-more-mirrors-to-try",
	"no-distro-upgrade-data", "incompatible-architecture", "no-space-on-device",
	"media-change-required", "not-authorized", "update-not-found", "cannot-install-repo-unsigned",
	"cannot-update-repo-unsigned", "cannot-get-filelist", "cannot-get-requires",
	"cannot-disable-repository", "restricted-download", "package-failed-to-configure",
	"package-failed-to-build", "package-failed-to-install", "package-failed-to-remove",
	"update-failed-due-to-running-process", "package-database-changed",
	"provide-type-not-supported", "install-root-invalid", "cannot-fetch-sources",
	"cancelled-priority", "unfinished-transaction", "lock-required", "repo-already-set",
}

func (c ErrorCode) String() string { return name(errorNames, uint32(c)) }

// Error makes an ErrorCode an error: its PackageKit name.
func (c ErrorCode) Error() string { return "packagekit: " + c.String() }

func name(names []string, v uint32) string {
	if int(v) < len(names) {
		return names[v]
	}
	return strconv.FormatUint(uint64(v), 10)
}

// Role is what a transaction does (PkRoleEnum).
type Role uint32

// Roles of the transactions this package runs.
const (
	RoleGetFiles         Role = 4
	RoleInstallPackages  Role = 11
	RoleRemovePackages   Role = 14
	RoleResolve          Role = 17
	RoleUpdatePackages   Role = 22
	RoleDownloadPackages Role = 25
	RoleGetFilesLocal    Role = 31
)

var roleNames = []string{
	"unknown", "cancel", "depends-on", "get-details", "get-files", "get-packages", "get-repo-list",
	"required-by", "get-update-detail", "get-updates", "install-files", "install-packages",
	"install-signature", "refresh-cache", "remove-packages", "repo-enable", "repo-set-data",
	"resolve", "search-details", "search-file", "search-group", "search-name", "update-packages",
	"what-provides", "accept-eula", "download-packages", "get-distro-upgrades", "get-categories",
	"get-old-transactions", "repair-system", "get-details-local", "get-files-local", "repo-remove",
	"upgrade-system",
}

func (r Role) String() string { return name(roleNames, uint32(r)) }

// changes reports whether a transaction of this role may change the
// installed packages or what the repositories offer.
func (r Role) changes() bool {
	switch r.String() {
	case "install-files", "install-packages", "refresh-cache", "remove-packages", "repo-enable",
		"repo-set-data", "update-packages", "upgrade-system", "repair-system", "repo-remove":
		return true
	}
	return false
}
