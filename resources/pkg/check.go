package pkg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
)

// ErrVersionNotFound is wrapped by the error of a package asked for in a
// version PackageKit does not offer.
var ErrVersionNotFound = errors.New("version not available")

// ErrNotAllowed is wrapped by the error of a package that exists but is
// left out by allownonfree or allowunsupported being false.
var ErrNotAllowed = errors.New("not allowed by allownonfree/allowunsupported")

// ErrWouldRemoveOthers is wrapped by the error of a removal that would also
// remove packages that depend on the ones to remove.
var ErrWouldRemoveOthers = errors.New("removal would also remove packages that depend on it")

// found is what a Resolve said about one name.
type found struct {
	installed []packagekit.Package
	available []packagekit.Package
}

// index sorts a Resolve's packages by name, dropping duplicates.
func index(pkgs []packagekit.Package) map[string]*found {
	idx := map[string]*found{}
	seen := map[string]bool{}
	for _, p := range pkgs {
		key := fmt.Sprintf("%d|%s", p.Info, p.ID)
		if seen[key] {
			continue
		}
		seen[key] = true
		f := idx[p.Name()]
		if f == nil {
			f = &found{}
			idx[p.Name()] = f
		}
		if p.Info == packagekit.InfoInstalled {
			f.installed = append(f.installed, p)
		} else {
			f.available = append(f.available, p)
		}
	}
	return idx
}

// target is one package to install, update or remove, by package ID.
type target struct {
	p    *Pkg
	id   string
	from string // the version installed now, if any
}

// plan is what a check found to do, by transaction.
type plan struct {
	remove  []target
	install []target // installed or newest, not installed yet
	update  []target // newest, an older version installed
	version []target // an exact version, not installed yet
	missing []*Pkg   // PackageKit knows no such package
}

func (p *plan) empty() bool {
	return len(p.remove)+len(p.install)+len(p.update)+len(p.version)+len(p.missing) == 0
}

// makePlan compares each package with what Resolve found.
func makePlan(members []*Pkg, idx map[string]*found) *plan {
	pl := &plan{}
	for _, m := range members {
		f := idx[m.name]
		if f == nil {
			f = &found{}
		}
		var cur string
		if len(f.installed) > 0 {
			cur = f.installed[0].Version()
		}
		switch m.stateClass() {
		case StateUninstalled:
			for _, p := range f.installed {
				pl.remove = append(pl.remove, target{m, p.ID, p.Version()})
			}
		case StateInstalled:
			switch {
			case len(f.installed) > 0:
			case len(f.available) > 0:
				pl.install = append(pl.install, target{p: m, id: f.available[0].ID})
			default:
				pl.missing = append(pl.missing, m)
			}
		case StateNewest:
			switch {
			case len(f.installed) == 0 && len(f.available) > 0:
				pl.install = append(pl.install, target{p: m, id: f.available[0].ID})
			case len(f.installed) == 0:
				pl.missing = append(pl.missing, m)
			default:
				// PackageKit lists an available version beside the
				// installed one only when it would upgrade to it.
				for _, a := range f.available {
					if a.Version() != cur {
						pl.update = append(pl.update, target{m, a.ID, cur})
						break
					}
				}
			}
		default: // an exact version
			ok := false
			for _, p := range f.installed {
				ok = ok || p.Version() == m.State
			}
			if ok {
				break
			}
			// The apt backend resolves an ID with a version it does not
			// have to another version; apply checks the version exists.
			ref := f.available
			if len(ref) == 0 {
				ref = f.installed
			}
			if len(ref) == 0 {
				pl.missing = append(pl.missing, m)
				break
			}
			pl.version = append(pl.version, target{m, packagekit.WithVersion(ref[0].ID, m.State), cur})
		}
	}
	return pl
}

func (r *Pkg) filters() packagekit.Filter {
	var f packagekit.Filter
	if !r.AllowNonFree {
		f |= packagekit.FilterFree
	}
	if !r.AllowUnsupported {
		f |= packagekit.FilterSupported
	}
	return f
}

func (r *Pkg) flags() packagekit.Flags {
	if r.AllowUntrusted {
		return 0
	}
	return packagekit.FlagOnlyTrusted
}

// CheckApply resolves every package the resource manages in one Resolve
// and, with apply, makes the changes in at most one transaction per kind:
// removals, installations (exact versions included), updates. Right after
// a check that found nothing to do, and with nothing seen by Watch since,
// it answers without asking PackageKit; so it does after an apply that
// made every change it asked for, while Watch saw only that apply's own
// events (see settled).
func (r *Pkg) CheckApply(ctx context.Context, apply bool) (bool, error) {
	watching := r.watching.Load()
	gen := r.gen.Load()
	if watching && r.clean.Load() == gen+1 {
		return false, nil
	}
	if watching && r.settled() {
		r.clean.Store(gen + 1)
		return false, nil
	}
	r.clean.Store(0)
	r.applied.Store(nil)
	foreign := r.foreign.Load()
	o := newOwn()
	c, err := r.client(ctx)
	if err != nil {
		return false, err
	}
	members := r.all()
	pkgs, err := c.Resolve(ctx, packagekit.FilterArch, names(members))
	if err != nil {
		return false, fmt.Errorf("pkg: resolving %s: %w", strings.Join(names(members), ", "), err)
	}
	pl := makePlan(members, index(pkgs))
	if pl.empty() {
		if watching {
			r.clean.Store(gen + 1)
		}
		return false, nil
	}
	pl.report(ctx)
	if !apply {
		return !pl.onlyMissing(), r.notFound(ctx, c, pl.missing)
	}
	changed, err := r.apply(ctx, c, pl, o)
	if err == nil && changed && watching && o.ok {
		r.applied.Store(&appliedState{stamp: o.last, foreign: foreign})
	}
	return changed, err
}

func (p *plan) onlyMissing() bool {
	return len(p.remove)+len(p.install)+len(p.update)+len(p.version) == 0
}

// report reports each package the plan would change: its name, the
// version installed (or "absent") and the one PackageKit would install
// (or "absent"), and what that is. Each change names its member
// (engine.ForMember): the report of a group lists a member by its own
// name, with its changes, and a change that names none is nobody's (the
// run counted a group that installed packages as changing nothing).
func (p *plan) report(ctx context.Context) {
	for _, s := range []struct {
		why string
		ts  []target
	}{{"remove", p.remove}, {"install", p.install}, {"upgrade", p.update}, {"install version", p.version}} {
		for _, t := range s.ts {
			c := engine.Change{Property: "package " + t.p.name, From: t.from, To: packagekit.Package{ID: t.id}.Version(), Why: s.why}
			if s.why == "remove" {
				c.To = ""
			}
			if c.From == "" {
				c.From = "absent"
			}
			if c.To == "" {
				c.To = "absent"
			}
			engine.Changed(engine.ForMember(ctx, "pkg["+t.p.name+"]"), c)
		}
	}
}

func ids(ts []target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.id
	}
	return out
}

func pkgNames(ts []target) string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.p.name
	}
	return strings.Join(out, ", ")
}

// apply carries out a plan. A failing step does not stop the others: each
// package that can reach its state does.
func (r *Pkg) apply(ctx context.Context, c *packagekit.Client, pl *plan, o *own) (changed bool, err error) {
	var errs []error
	log := r.logger()

	if len(pl.remove) > 0 {
		if err := r.remove(ctx, c, pl.remove, o); err != nil {
			errs = append(errs, err)
		} else {
			changed = true
		}
	}

	// Installs and updates go to packages PackageKit offers under the
	// resource's filters, and exact versions only if they exist.
	install, update, verr := r.verify(ctx, c, pl)
	errs = append(errs, verr)
	flags := r.flags()
	for _, t := range install {
		if t.from != "" && t.p.stateClass() == "version" {
			flags |= packagekit.FlagAllowDowngrade
		}
	}
	for _, step := range []struct {
		what string
		ts   []target
		run  func(context.Context, packagekit.Flags, []string) (*packagekit.Result, error)
	}{
		{"installed", install, c.InstallPackages},
		{"updated", update, c.UpdatePackages},
	} {
		if len(step.ts) == 0 {
			continue
		}
		t0 := time.Now()
		o.before()
		res, err := step.run(ctx, flags, ids(step.ts))
		o.after()
		if err != nil {
			errs = append(errs, fmt.Errorf("pkg: %s: %w", pkgNames(step.ts), err))
			continue
		}
		changed = true
		log.Info(step.what, "packages", ids(step.ts), "tx", string(res.Path), "took", time.Since(t0).Round(time.Millisecond))
	}
	errs = append(errs, r.notFound(ctx, c, pl.missing))
	return changed, errors.Join(errs...)
}

// remove removes packages in one transaction, after a simulation shows
// that nothing else would go with them (PackageKit's apt backend removes
// what depends on a package even when told not to).
func (r *Pkg) remove(ctx context.Context, c *packagekit.Client, ts []target, o *own) error {
	want := map[string]bool{}
	for _, t := range ts {
		want[t.p.name] = true
	}
	sim, err := c.RemovePackages(ctx, packagekit.FlagSimulate, ids(ts), false, false)
	if err != nil {
		return fmt.Errorf("pkg: removing %s: %w", pkgNames(ts), err)
	}
	var others []string
	for _, p := range sim.Packages {
		if !want[p.Name()] && !contains(others, p.Name()) {
			others = append(others, p.Name())
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("pkg: removing %s: %w: %s (declare them uninstalled too)", pkgNames(ts), ErrWouldRemoveOthers, strings.Join(others, ", "))
	}
	t0 := time.Now()
	o.before()
	res, err := c.RemovePackages(ctx, 0, ids(ts), false, false)
	o.after()
	if err != nil {
		return fmt.Errorf("pkg: removing %s: %w", pkgNames(ts), err)
	}
	r.logger().Info("removed", "packages", ids(ts), "tx", string(res.Path), "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// verify returns what to install and what to update: the plan's targets
// that PackageKit offers under the resource's filters, and the exact
// versions it has. It needs a second Resolve only when there are filters
// or exact versions to check.
func (r *Pkg) verify(ctx context.Context, c *packagekit.Client, pl *plan) (install, update []target, err error) {
	filter := r.filters()
	named := append(append([]target(nil), pl.install...), pl.update...)
	if len(pl.version) == 0 && (filter == 0 || len(named) == 0) {
		return pl.install, pl.update, nil
	}
	var queries []string
	if filter != 0 {
		for _, t := range named {
			queries = append(queries, t.p.name)
		}
	}
	for _, t := range pl.version {
		queries = append(queries, t.id)
	}
	if len(queries) == 0 {
		return pl.install, pl.update, nil
	}
	pkgs, err := c.Resolve(ctx, packagekit.FilterArch|filter, queries)
	if err != nil {
		return nil, nil, fmt.Errorf("pkg: resolving %s: %w", strings.Join(queries, ", "), err)
	}
	offered := map[string]bool{}
	byName := map[string]bool{}
	for _, p := range pkgs {
		offered[p.Name()+";"+p.Version()] = true
		byName[p.Name()] = true
	}
	var errs []error
	keep := func(ts []target) []target {
		var out []target
		for _, t := range ts {
			if filter == 0 || byName[t.p.name] {
				out = append(out, t)
				continue
			}
			errs = append(errs, fmt.Errorf("pkg %s: %w: PackageKit offers it, but not as %s: set %s: true to install it",
				t.p.name, ErrNotAllowed, filterWords(filter), filterParams(filter)))
		}
		return out
	}
	install = keep(pl.install)
	update = keep(pl.update)
	for _, t := range pl.version {
		pk := packagekit.Package{ID: t.id}
		if offered[pk.Name()+";"+pk.Version()] {
			install = append(install, t)
			continue
		}
		msg := ""
		if filter != 0 {
			msg = fmt.Sprintf(" (or not as %s: see %s)", filterWords(filter), filterParams(filter))
		}
		errs = append(errs, fmt.Errorf("pkg %s: %w: PackageKit has no version %s%s", t.p.name, ErrVersionNotFound, t.p.State, msg))
	}
	return install, update, errors.Join(errs...)
}

func filterWords(f packagekit.Filter) string {
	free, supported := f&packagekit.FilterFree != 0, f&packagekit.FilterSupported != 0
	switch {
	case free && supported:
		return "free software the distribution supports"
	case free:
		return "free software"
	default:
		return "a package the distribution supports"
	}
}

func filterParams(f packagekit.Filter) string {
	var w []string
	if f&packagekit.FilterFree != 0 {
		w = append(w, "allownonfree")
	}
	if f&packagekit.FilterSupported != 0 {
		w = append(w, "allowunsupported")
	}
	return strings.Join(w, " or ")
}

// notFound returns PackageKit's own error for packages it cannot resolve:
// it asks for a simulated installation of them, which PackageKit refuses
// with its package-not-found error and message.
func (r *Pkg) notFound(ctx context.Context, c *packagekit.Client, missing []*Pkg) error {
	if len(missing) == 0 {
		return nil
	}
	ids := make([]string, len(missing))
	for i, m := range missing {
		ids[i] = m.name + ";;;"
	}
	_, err := c.InstallPackages(ctx, packagekit.FlagSimulate, ids)
	if err == nil {
		err = packagekit.ErrPackageNotFound
	}
	return fmt.Errorf("pkg: %s: not found: %w", strings.Join(names(missing), ", "), err)
}
