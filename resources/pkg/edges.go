package pkg

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
)

// filesTTL is how long the files of a package, once fetched for automatic
// edges, are reused: long enough for one compilation of a large graph.
const filesTTL = time.Minute

// The files packages ship are fetched for every pkg resource of a graph at
// once: Validate (called for every resource before the graph is compiled)
// names the packages, and the first AutoEdges call fetches them all in a
// few transactions, whose results the other calls find here.
var files struct {
	mu      sync.Mutex             // guards the fields below; held while a batch is fetched
	pending map[string]bool        // packages named by Validate, not fetched yet
	cache   map[filesKey]filesItem // what was fetched
}

type filesKey struct{ addr, name string }

type filesItem struct {
	files []string
	err   error
	at    time.Time
}

// wantFiles notes that the files of a package may be asked for soon.
func wantFiles(name string) {
	files.mu.Lock()
	defer files.mu.Unlock()
	if files.pending == nil {
		files.pending = map[string]bool{}
	}
	files.pending[name] = true
}

// AutoEdges asks for edges to the file resources of the paths the packages
// ship (leaf paths: directories holding other shipped paths are shared
// structure, such as /etc or /usr/share, and are left out) and to the svc
// resources of the systemd units they ship. A package being uninstalled
// asks for none. A package PackageKit cannot resolve, or whose files it
// cannot list, is an error (the engine logs it as a warning).
func (r *Pkg) AutoEdges(ctx context.Context) ([]engine.AutoEdge, error) {
	var edges []engine.AutoEdge
	var errs []error
	for _, m := range r.all() {
		if m.stateClass() == StateUninstalled {
			continue
		}
		fs, err := shippedFiles(ctx, m.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		edges = append(edges, edgesFor(fs)...)
	}
	return edges, errors.Join(errs...)
}

// AutoEdgeKinds: the edges of AutoEdges name only file and svc resources;
// in a graph without them the engine does not call AutoEdges, and no file
// list is fetched.
func (r *Pkg) AutoEdgeKinds() []string { return []string{"file", "svc"} }

// unitDirs are where packages put systemd units.
var unitDirs = []string{"/lib/systemd/system", "/usr/lib/systemd/system"}

var unitSuffixes = []string{".service", ".socket", ".timer", ".path", ".mount", ".automount", ".swap", ".target", ".slice"}

// edgesFor turns a package's file list into automatic edges.
func edgesFor(list []string) []engine.AutoEdge {
	paths := map[string]bool{}
	parents := map[string]bool{}
	for _, f := range list {
		p := path.Clean("/" + f)
		if p == "/" {
			continue
		}
		paths[p] = true
		for d := path.Dir(p); d != "/" && !parents[d]; d = path.Dir(d) {
			parents[d] = true
		}
	}
	var edges []engine.AutoEdge
	for _, p := range sortedKeys(paths) {
		if parents[p] {
			continue
		}
		edges = append(edges, engine.AutoEdge{
			UIDs:   []engine.UID{{Kind: "file", Key: p}, {Kind: "file", Key: p + "/"}},
			Before: true,
		})
		dir, base := path.Split(p)
		for _, d := range unitDirs {
			if strings.TrimSuffix(dir, "/") != d {
				continue
			}
			for _, s := range unitSuffixes {
				if strings.HasSuffix(base, s) && len(base) > len(s) {
					edges = append(edges, engine.AutoEdge{UIDs: []engine.UID{{Kind: "svc", Key: base}}, Before: true})
				}
			}
		}
	}
	return edges
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// shippedFiles returns the files of one package, fetching those of every
// pending package along with it.
func shippedFiles(ctx context.Context, name string) ([]string, error) {
	c, err := packagekit.Shared(ctx)
	if err != nil {
		return nil, fmt.Errorf("pkg %s: files: %w", name, err)
	}
	addr := c.Addr()
	files.mu.Lock()
	defer files.mu.Unlock()
	now := time.Now()
	fresh := func(n string) (filesItem, bool) {
		it, ok := files.cache[filesKey{addr, n}]
		return it, ok && now.Sub(it.at) < filesTTL
	}
	if it, ok := fresh(name); ok {
		return it.files, it.err
	}
	batch := []string{name}
	for n := range files.pending {
		if _, ok := fresh(n); !ok && n != name {
			batch = append(batch, n)
		}
	}
	clear(files.pending)
	got := fetchFiles(ctx, c, batch)
	if files.cache == nil {
		files.cache = map[filesKey]filesItem{}
	}
	for k, it := range files.cache {
		if now.Sub(it.at) >= filesTTL {
			delete(files.cache, k)
		}
	}
	for _, n := range batch {
		it := got[n]
		it.at = now
		files.cache[filesKey{addr, n}] = it
	}
	it := got[name]
	return it.files, it.err
}

// fetchFiles lists the files of packages in a few transactions: one
// Resolve; GetFiles for the installed ones; for the others,
// DownloadPackages (into the package manager's cache, where an
// installation finds them later) and GetFilesLocal on what it downloaded.
func fetchFiles(ctx context.Context, c *packagekit.Client, batch []string) map[string]filesItem {
	out := make(map[string]filesItem, len(batch))
	failAll := func(ns []string, err error) {
		for _, n := range ns {
			out[n] = filesItem{err: fmt.Errorf("pkg %s: files: %w", n, err)}
		}
	}
	pkgs, err := c.Resolve(ctx, packagekit.FilterArch, batch)
	if err != nil {
		failAll(batch, err)
		return out
	}
	idx := index(pkgs)
	var installed, other, installedNames, otherNames []string
	for _, n := range batch {
		f := idx[n]
		switch {
		case f == nil:
			out[n] = filesItem{err: fmt.Errorf("pkg %s: files: PackageKit cannot resolve it: %w", n, packagekit.ErrPackageNotFound)}
		case len(f.installed) > 0:
			installed = append(installed, f.installed[0].ID)
			installedNames = append(installedNames, n)
		default:
			other = append(other, f.available[0].ID)
			otherNames = append(otherNames, n)
		}
	}
	byName := func(m map[string][]string) {
		for id, fs := range m {
			n := packagekit.Package{ID: id}.Name()
			it := out[n]
			it.files = append(it.files, fs...)
			out[n] = it
		}
	}
	if len(installed) > 0 {
		fs, err := c.GetFiles(ctx, installed)
		if err != nil {
			failAll(installedNames, err)
		} else {
			byName(fs)
		}
	}
	if len(other) > 0 {
		res, err := c.Transact(ctx, "DownloadPackages", true, other)
		if err != nil {
			failAll(otherNames, err)
			return out
		}
		var debs []string
		for _, fs := range res.Files {
			debs = append(debs, fs...)
		}
		local, err := c.Transact(ctx, "GetFilesLocal", debs)
		if err != nil {
			failAll(otherNames, err)
			return out
		}
		byName(local.Files)
	}
	return out
}
