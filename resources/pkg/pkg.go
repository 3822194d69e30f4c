// Package pkg is the pkg resource: a package kept installed, removed, at its newest version or at an exact version through PackageKit, with ungrouped pkg vertices merged into one transaction and ordered before the files and services they ship.
package pkg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"unicode"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
)

func init() {
	engine.Register("pkg", func() engine.Res { return &Pkg{} })
}

// States a package can be asked to be in; any other state is an exact
// version.
const (
	StateInstalled   = "installed"
	StateUninstalled = "uninstalled"
	StateNewest      = "newest"
)

// Pkg manages one package, or (after Group) several at once.
type Pkg struct {
	// State is installed (the default: any version), uninstalled, newest
	// (installed and updated whenever a newer version is available) or an
	// exact version ("1.0-2", "2:1.4.2-1"): installed, upgraded or
	// downgraded to it.
	State string `yaml:"state"`
	// AllowUntrusted installs packages that are not signed by a trusted
	// key (PackageKit's only-trusted transaction flag is left out).
	AllowUntrusted bool `yaml:"allowuntrusted"`
	// AllowNonFree installs packages that are not free software (without
	// it, Resolve uses PackageKit's free filter before installing).
	AllowNonFree bool `yaml:"allownonfree"`
	// AllowUnsupported installs packages the distribution does not support
	// (third-party or local repositories; without it, Resolve uses
	// PackageKit's supported filter before installing).
	AllowUnsupported bool `yaml:"allowunsupported"`

	name    string // the package, from the resource's name
	members []*Pkg // set on the resource Group returns: the packages it manages
	log     *slog.Logger

	// What Watch has seen, so that a check right after one that found
	// everything in place can answer without asking PackageKit.
	watching atomic.Bool   // Watch's subscriptions are in place
	gen      atomic.Uint64 // bumped by every event Watch sees
	clean    atomic.Uint64 // gen+1 as it was before the last check that found nothing to do; 0: unknown
	// Events the resource's own transactions cannot have caused (another
	// client's transaction ending, RepoListChanged, apt's lists changing).
	foreign atomic.Uint64
	// What the last apply left, when every change it asked for was made
	// and the package database changed only while its own transactions
	// ran: a later check finds it in place while the database is as that
	// apply left it and no foreign event came since (see settled).
	applied atomic.Pointer[appliedState]
}

// SetName makes the resource's name the package's name.
func (r *Pkg) SetName(name string) { r.name = name }

// Name is the package's name ("" for a group).
func (r *Pkg) Name() string { return r.name }

// all lists the packages the resource manages: its members for a group,
// else itself.
func (r *Pkg) all() []*Pkg {
	if r.members != nil {
		return r.members
	}
	return []*Pkg{r}
}

func names(ps []*Pkg) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name
	}
	return out
}

// stateClass is what kind of state a package is asked for: one of the
// State constants, or "version".
func (r *Pkg) stateClass() string {
	switch r.State {
	case "", StateInstalled:
		return StateInstalled
	case StateUninstalled, StateNewest:
		return r.State
	}
	return "version"
}

// Validate checks the name and the state. A state that is not a keyword
// is a version and must start with a digit, as Debian and RPM versions do
// (with an epoch, "2:1.4-1"), so that a misspelt keyword is not taken for
// a version.
func (r *Pkg) Validate() error {
	if r.members != nil {
		var errs []error
		for _, m := range r.members {
			errs = append(errs, m.Validate())
		}
		return errors.Join(errs...)
	}
	var errs []error
	switch {
	case r.name == "":
		errs = append(errs, errors.New("name: missing: want the package's name, e.g. name: nginx"))
	case strings.IndexFunc(r.name, invalidNameRune) >= 0:
		errs = append(errs, fmt.Errorf("name: %q is not a package name: no spaces, ';' or control characters", r.name))
	}
	if r.stateClass() == "version" {
		v := r.State
		if v[0] < '0' || v[0] > '9' || strings.IndexFunc(v, invalidNameRune) >= 0 {
			errs = append(errs, fmt.Errorf("state: %q is invalid: want installed (the default), uninstalled, newest, or a version such as 1.2-3", v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if r.stateClass() != StateUninstalled {
		wantFiles(r.name)
	}
	return nil
}

func invalidNameRune(c rune) bool {
	return c == ';' || unicode.IsSpace(c) || unicode.IsControl(c)
}

// Init keeps the logger, and logs what a group manages.
func (r *Pkg) Init(env engine.Env) error {
	r.log = env.Logger
	if r.members != nil {
		r.logger().Info("packages grouped: one PackageKit transaction per kind of change", "packages", strings.Join(names(r.members), ","))
	}
	return nil
}

func (r *Pkg) logger() *slog.Logger {
	if r.log == nil {
		return slog.Default().With("res", "pkg["+r.name+"]")
	}
	return r.log
}

// Close has nothing to release: the bus connection is the process's.
func (r *Pkg) Close() error { return nil }

// UIDs names the packages the resource manages.
func (r *Pkg) UIDs() []engine.UID {
	var uids []engine.UID
	for _, m := range r.all() {
		uids = append(uids, engine.UID{Kind: "pkg", Key: m.name})
	}
	return uids
}

// GroupKey: packages with the same allow* parameters can share
// transactions, whatever states they ask for (a group does at most one
// removal, one installation and one update transaction per check).
func (r *Pkg) GroupKey() string {
	return fmt.Sprintf("untrusted=%t,nonfree=%t,unsupported=%t", r.AllowUntrusted, r.AllowNonFree, r.AllowUnsupported)
}

// Group returns one resource that manages r and others (all *Pkg with r's
// GroupKey) together.
func (r *Pkg) Group(others []engine.Res) (engine.Res, error) {
	g := &Pkg{AllowUntrusted: r.AllowUntrusted, AllowNonFree: r.AllowNonFree, AllowUnsupported: r.AllowUnsupported}
	g.members = append(g.members, r.all()...)
	for _, o := range others {
		p, ok := o.(*Pkg)
		if !ok {
			return nil, fmt.Errorf("pkg: cannot group a %T with packages", o)
		}
		if p.GroupKey() != r.GroupKey() {
			return nil, fmt.Errorf("pkg: cannot group %s (%s) with %s (%s)", p.name, p.GroupKey(), r.name, r.GroupKey())
		}
		g.members = append(g.members, p.all()...)
	}
	seen := map[string]bool{}
	for _, m := range g.members {
		if seen[m.name] {
			return nil, fmt.Errorf("pkg: package %s appears twice in one group", m.name)
		}
		seen[m.name] = true
	}
	return g, nil
}

// client returns the process's PackageKit client, logging to r's logger.
func (r *Pkg) client(ctx context.Context) (*packagekit.Client, error) {
	c, err := packagekit.Shared(ctx)
	if err != nil {
		return nil, fmt.Errorf("pkg: %w", err)
	}
	return c.WithLogger(r.logger()), nil
}
