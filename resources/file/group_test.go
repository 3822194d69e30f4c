package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/restest"
)

// groupOf groups files as the engine's autogroup would.
func groupOf(t *testing.T, files ...*File) engine.Res {
	t.Helper()
	others := make([]engine.Res, 0, len(files)-1)
	for _, f := range files[1:] {
		others = append(others, f)
	}
	g, err := files[0].Group(others)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGroupKey(t *testing.T) {
	key := func(r *File) string { must(t, r.Validate()); return r.GroupKey() }
	a, b := key(&File{Path: "/srv/x/a", Content: ptr("a")}), key(&File{Path: "/srv/x/b"})
	if a == "" || a != b {
		t.Fatalf("files of one directory have keys %q and %q, want one non-empty key", a, b)
	}
	if c := key(&File{Path: "/srv/y/a", Content: ptr("a")}); c == a {
		t.Fatalf("files of two directories share the key %q", c)
	}
	src := t.TempDir()
	for _, r := range []*File{
		{Path: "/srv/x/d/"},
		{Path: "/srv/x/gone", State: StateAbsent},
		{Path: "/srv/x/tree/", Source: src, Recurse: true},
	} {
		if k := key(r); k != "" {
			t.Errorf("%s (state %q, recurse %v) has the group key %q: want none, it is not batched", r.Path, r.State, r.Recurse, k)
		}
	}
}

// A group of files passes the conformance suite: each member's drift is
// seen by the group's Watch and repaired by its CheckApply.
func TestGroupConformance(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	p := func(i int) string { return fmt.Sprintf("%s/f%d", root, i) }
	restest.Run(t, restest.Case{
		Kind: "file",
		Res: func(t *testing.T) engine.Res {
			var fs []*File
			for i := range 3 {
				fs = append(fs, &File{Path: p(i), Content: ptr(fmt.Sprintf("member %d\n", i)), Mode: "0640"})
			}
			return groupOf(t, fs...)
		},
		State: func(t *testing.T) string { return describe(t, root) },
		Drifts: []restest.Drift{
			drift("edit one", func() error { return os.WriteFile(p(1), []byte("changed by hand\n"), 0o640) }),
			drift("delete one", func() error { return os.Remove(p(2)) }),
			drift("chmod one", func() error { return os.Chmod(p(0), 0o666) }),
			drift("rename one away", func() error { return os.Rename(p(1), outside+"/g") }),
			drift("replace one by a symlink", func() error {
				if err := os.Remove(p(2)); err != nil {
					return err
				}
				return os.Symlink("/etc/hostname", p(2))
			}),
		},
	})
}

// A group applies its members in batches (more than batchSize here), each
// change reported under the member's name; it leaves no temporary file, and
// a second check has nothing to do.
func TestGroupAppliesEveryMember(t *testing.T) {
	dir := t.TempDir()
	n := batchSize + 44
	var fs []*File
	for i := range n {
		f := &File{Path: fmt.Sprintf("%s/f%03d", dir, i), Content: ptr(fmt.Sprintf("file %d\n", i))}
		f.SetName(fmt.Sprintf("f%d", i))
		fs = append(fs, f)
	}
	g := groupOf(t, fs...)
	must(t, g.Validate())
	must(t, g.(engine.Initer).Init(restest.Env(t, "file")))
	rec := &restest.Recorder{}
	changed, err := g.CheckApply(engine.WithRecorder(t.Context(), rec), true)
	if err != nil || !changed {
		t.Fatalf("CheckApply: %v, %v; want a change", changed, err)
	}
	perMember := map[string][]string{}
	for _, c := range rec.Changes() {
		perMember[c.Res] = append(perMember[c.Res], c.Property)
	}
	for i := range n {
		res := fmt.Sprintf("file[f%d]", i)
		if got := perMember[res]; !slices.Equal(got, []string{"state", "content"}) {
			t.Fatalf("%s reported %v, want [state content] (all: %d members)", res, got, len(perMember))
		}
		data, err := os.ReadFile(fs[i].Path)
		if err != nil || string(data) != fmt.Sprintf("file %d\n", i) {
			t.Fatalf("%s holds %q, %v", fs[i].Path, data, err)
		}
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) != n {
		t.Fatalf("%d entries in the directory, want the %d files alone", len(entries), n)
	}
	if changed, err := restest.CheckApply(t, g, true); changed || err != nil {
		t.Fatalf("second CheckApply: %v, %v; want nothing to do", changed, err)
	}
}

// One member that cannot be applied fails alone: the error names it and
// only it, and the other members are applied.
func TestGroupMemberFailsAlone(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(dir+"/b", 0o755)) // a directory in the way of file b
	var fs []*File
	for _, n := range []string{"a", "b", "c"} {
		f := &File{Path: dir + "/" + n, Content: ptr(n + "\n")}
		f.SetName(n)
		fs = append(fs, f)
	}
	g := groupOf(t, fs...)
	must(t, g.Validate())
	rec := &restest.Recorder{}
	changed, err := g.CheckApply(engine.WithRecorder(t.Context(), rec), true)
	if !changed {
		t.Fatal("no change reported, want a and c written")
	}
	if !errors.Is(err, ErrInTheWay) {
		t.Fatalf("error %v, want ErrInTheWay for b", err)
	}
	var failed []string
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case *engine.MemberError:
			failed = append(failed, x.Res)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	if !slices.Equal(failed, []string{"file[b]"}) {
		t.Fatalf("failed members %v (error %q), want file[b] alone", failed, err)
	}
	for _, n := range []string{"a", "c"} {
		if data, err := os.ReadFile(dir + "/" + n); err != nil || string(data) != n+"\n" {
			t.Errorf("%s holds %q, %v: the other members must be applied", n, data, err)
		}
	}
	for _, c := range rec.Changes() {
		if c.Res == "" {
			t.Errorf("change %+v names no member", c)
		}
	}
}

// stopAfter is a context that ends (Err returns Canceled) after n calls
// of Err: a check that notices it at any point must leave no temporary file.
type stopAfter struct {
	context.Context
	n atomic.Int32
}

func (c *stopAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// A check of a group whose context ends at any point (after each number
// of its looks at the context) leaves every member absent or whole, and no
// temporary file.
func TestGroupCancelledLeavesNoTemporaryFile(t *testing.T) {
	for n := range int32(40) {
		dir := t.TempDir()
		var fs []*File
		for i := range 5 {
			fs = append(fs, &File{Path: fmt.Sprintf("%s/f%d", dir, i), Content: ptr(fmt.Sprintf("content %d\n", i))})
		}
		g := groupOf(t, fs...)
		must(t, g.Validate())
		ctx := &stopAfter{Context: t.Context()}
		ctx.n.Store(n)
		_, err := g.CheckApply(ctx, true)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped after %d: %v", n, err)
		}
		entries, rerr := os.ReadDir(dir)
		must(t, rerr)
		for _, e := range entries {
			if IsTemp(e.Name()) {
				t.Errorf("stopped after %d: %s left behind", n, e.Name())
			}
		}
		for i, f := range fs {
			data, rerr := os.ReadFile(f.Path)
			if errors.Is(rerr, os.ErrNotExist) && err != nil {
				continue
			}
			if want := fmt.Sprintf("content %d\n", i); string(data) != want {
				t.Errorf("stopped after %d (error %v): %s holds %q, %v; want it absent or whole", n, err, f.Path, data, rerr)
			}
		}
	}
}

// meta autogroup false keeps a file out of its directory's group; the
// files of a directory come after the directory's resource, and are not
// ordered among themselves.
func TestAutogroupInGraph(t *testing.T) {
	dir := t.TempDir()
	v := func(name, path string, content *string, meta engine.Meta) *engine.Vertex {
		f := &File{Path: path, Content: content}
		f.SetName(name)
		must(t, f.Validate())
		return &engine.Vertex{Kind: "file", Name: name, Meta: meta, Res: f}
	}
	alone := engine.DefaultMeta()
	alone.AutoGroup = false
	d := &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		v("dir", dir+"/sub/", nil, engine.DefaultMeta()),
		v("a", dir+"/sub/a", ptr("a"), engine.DefaultMeta()),
		v("b", dir+"/sub/b", ptr("b"), engine.DefaultMeta()),
		v("c", dir+"/sub/c", ptr("c"), engine.DefaultMeta()),
		v("d", dir+"/sub/d", ptr("d"), alone),
	}}
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	got := g.String()
	for _, want := range []string{
		"file[dir] -> file[autogroup:(a,b,c)]",
		"file[dir] -> file[d]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("graph lacks %q:\n%s", want, got)
		}
	}
	if n := len(g.Vertices()); n != 3 {
		t.Errorf("%d vertices, want 3 (the directory, the group, d):\n%s", n, got)
	}
}

// A member's drift marks that member alone: a check the group's watch
// alone asked for (engine.OnlyWatched) takes it alone; any other check
// takes every member; a member that failed is taken again.
func TestGroupWatchMarksTheDriftedMember(t *testing.T) {
	dir := t.TempDir()
	var fs []*File
	for i := range 3 {
		fs = append(fs, &File{Path: fmt.Sprintf("%s/f%d", dir, i), Content: ptr("x\n")})
	}
	g := groupOf(t, fs...).(*group)
	must(t, g.Validate())
	if _, err := g.CheckApply(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ev := restest.NewEvents()
	watchErr := make(chan error, 1)
	go func() { watchErr <- g.Watch(ctx, ev) }()
	defer func() { cancel(); <-watchErr }()
	if !ev.WaitRunning(restest.DefaultTimeout, watchErr) {
		t.Fatal("Watch did not call Running")
	}
	ev.Settle(100*time.Millisecond, restest.DefaultTimeout)
	must(t, os.WriteFile(fs[1].Path, []byte("drift\n"), 0o644))
	if !ev.WaitDirty(restest.DefaultTimeout) {
		t.Fatal("the drift of a member did not dirty the group")
	}
	ev.Settle(100*time.Millisecond, restest.DefaultTimeout)
	if got := g.take(true, nil); !slices.Equal(got, []int{1}) {
		t.Fatalf("a watched check takes members %v, want [1], the drifted one", got)
	}
	if got := g.take(true, nil); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("with no member marked, a check takes %v, want all", got)
	}
	g.mark([]int{2}) // as a failed member is
	if got := g.take(false, nil); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("a check not asked for by the watch alone takes %v, want all", got)
	}
	if got := g.take(true, nil); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("after a check of all, a watched check takes %v, want all (none marked)", got)
	}
}

// One bad file fails itself, not its group: what depends on a member that
// was applied runs, what depends on the failed member waits, and the run's
// error names the failed member alone.
func TestGroupFailureHoldsBackOnlyItsDependents(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/sub/bad/in-the-way", 0o755))
	v := func(name, path string, meta engine.Meta) *engine.Vertex {
		f := &File{Path: path, Content: ptr(name)}
		f.SetName(name)
		must(t, f.Validate())
		return &engine.Vertex{Kind: "file", Name: name, Meta: meta, Res: f}
	}
	alone := engine.DefaultMeta()
	alone.AutoGroup = false
	d := &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		v("good", dir+"/sub/good", engine.DefaultMeta()),
		v("bad", dir+"/sub/bad", engine.DefaultMeta()),
		v("other", dir+"/sub/other", engine.DefaultMeta()),
		v("after-good", dir+"/after-good", alone),
		v("after-bad", dir+"/after-bad", alone),
	}, Edges: []engine.EdgeDecl{
		{From: engine.Ref{Kind: "file", Name: "good"}, To: engine.Ref{Kind: "file", Name: "after-good"}},
		{From: engine.Ref{Kind: "file", Name: "bad"}, To: engine.Ref{Kind: "file", Name: "after-bad"}},
	}}
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	if !strings.Contains(g.String(), "file[autogroup:(bad,good,other)]") {
		t.Fatalf("the three files of sub/ are not one group:\n%s", g)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: 300 * time.Millisecond})
	err = e.Run(ctx, g)
	var re *engine.RunError
	if !errors.As(err, &re) || len(re.Failures) != 1 || re.Failures[0].Res != "file[bad]" {
		t.Fatalf("run: %v; want the failure of file[bad] alone", err)
	}
	for path, want := range map[string]bool{"sub/good": true, "sub/other": true, "after-good": true, "after-bad": false} {
		_, err := os.Stat(dir + "/" + path)
		if got := err == nil; got != want {
			t.Errorf("%s written: %v, want %v", path, got, want)
		}
	}
}

// The other way round: a failed resource one member depends on holds back
// that member alone; the group applies the others (engine.MemberHolder),
// and the held member is applied once its parent recovers.
func TestGroupMemberHeldBackAlone(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/blocker/in-the-way", 0o755))
	v := func(name, path string, meta engine.Meta) *engine.Vertex {
		f := &File{Path: path, Content: ptr(name)}
		f.SetName(name)
		must(t, f.Validate())
		return &engine.Vertex{Kind: "file", Name: name, Meta: meta, Res: f}
	}
	alone := engine.DefaultMeta()
	alone.AutoGroup = false
	alone.Retry = -1
	alone.Delay = 20
	d := &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		v("blocker", dir+"/blocker", alone),
		v("a", dir+"/sub/a", engine.DefaultMeta()),
		v("b", dir+"/sub/b", engine.DefaultMeta()),
		v("c", dir+"/sub/c", engine.DefaultMeta()),
	}, Edges: []engine.EdgeDecl{
		{From: engine.Ref{Kind: "file", Name: "blocker"}, To: engine.Ref{Kind: "file", Name: "a"}},
	}}
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	if !strings.Contains(g.String(), "file[autogroup:(a,b,c)]") {
		t.Fatalf("the files of sub/ are not one group:\n%s", g)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: -1})
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	written := func(name string) bool { _, err := os.Stat(dir + "/sub/" + name); return err == nil }
	for !written("b") || !written("c") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("b and c never written: the failed blocker held back the whole group")
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond) // a few retries of the blocker
	if written("a") {
		t.Fatal("a was written while the blocker it depends on failed")
	}
	must(t, os.RemoveAll(dir+"/blocker")) // the blocker's next retry succeeds
	for !written("a") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-ctx.Done():
			t.Fatal("a never written once the blocker recovered")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}

// groupChain declares, in a new temporary directory, a chain of three
// file groups, a1,a2 in s1 → b1,b2 in s2 → c1,c2 in s3, each member
// depending on the member of the same number in the group before
// (a1 → b1 → c1, a2 → b2 → c2). a2 fails until its path is freed (a
// directory, dir/s1/a2, is in its way); every file retries for ever, 20ms
// apart.
func groupChain(t *testing.T) (dir string, d *engine.Decl) {
	t.Helper()
	dir = t.TempDir()
	must(t, os.MkdirAll(dir+"/s1/a2/in-the-way", 0o755))
	v := func(name, path string) *engine.Vertex {
		f := &File{Path: path, Content: ptr(name)}
		f.SetName(name)
		must(t, f.Validate())
		meta := engine.DefaultMeta()
		meta.Retry = -1
		meta.Delay = 20
		return &engine.Vertex{Kind: "file", Name: name, Meta: meta, Res: f}
	}
	ref := func(name string) engine.Ref { return engine.Ref{Kind: "file", Name: name} }
	return dir, &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		v("a1", dir+"/s1/a1"), v("a2", dir+"/s1/a2"),
		v("b1", dir+"/s2/b1"), v("b2", dir+"/s2/b2"),
		v("c1", dir+"/s3/c1"), v("c2", dir+"/s3/c2"),
	}, Edges: []engine.EdgeDecl{
		{From: ref("a1"), To: ref("b1")}, {From: ref("a2"), To: ref("b2")},
		{From: ref("b1"), To: ref("c1")}, {From: ref("b2"), To: ref("c2")},
	}}
}

// A chain of groups, each member depending on one member of the group
// before: a2 fails, and only b2 and c2 (which depend on it, through b2) are
// held back; a1 → b1 → c1 are applied. The edges between two groups merge
// into one; each keeps which member reaches which (pgraph.Edge.Pairs).
func TestGroupToGroupHoldsBackOnlyPairedMembers(t *testing.T) {
	dir, d := groupChain(t)
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	for _, grp := range []string{"(a1,a2)", "(b1,b2)", "(c1,c2)"} {
		if !strings.Contains(g.String(), "file[autogroup:"+grp+"]") {
			t.Fatalf("no group %s:\n%s", grp, g)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: -1})
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, g) }()
	written := func(p string) bool { _, err := os.Stat(dir + "/" + p); return err == nil }
	for !written("s2/b1") || !written("s3/c1") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("b1 or c1 never written (b1 %v, c1 %v): a2's failure held back members that do not depend on it", written("s2/b1"), written("s3/c1"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	time.Sleep(100 * time.Millisecond) // a few retries of a2
	if written("s2/b2") || written("s3/c2") {
		t.Fatal("b2 or c2 written while a2, which they depend on, failed")
	}
	must(t, os.RemoveAll(dir+"/s1/a2")) // a2's next retry succeeds
	for !written("s2/b2") || !written("s3/c2") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("b2 or c2 never written once a2 recovered (b2 %v, c2 %v)", written("s2/b2"), written("s3/c2"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
}

// With a converged timeout of 0, a run whose failed resource (no retries)
// holds back one member ends only after the group has applied the others:
// the graph is not stalled while the group can still go on without it.
func TestGroupHeldMemberConvergedTimeoutZero(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/blocker/in-the-way", 0o755))
	v := func(name, path string, meta engine.Meta) *engine.Vertex {
		f := &File{Path: path, Content: ptr(name)}
		f.SetName(name)
		must(t, f.Validate())
		return &engine.Vertex{Kind: "file", Name: name, Meta: meta, Res: f}
	}
	alone := engine.DefaultMeta()
	alone.AutoGroup = false
	alone.Retry = 0
	d := &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		v("blocker", dir+"/blocker", alone),
		v("a", dir+"/sub/a", engine.DefaultMeta()),
		v("b", dir+"/sub/b", engine.DefaultMeta()),
		v("c", dir+"/sub/c", engine.DefaultMeta()),
	}, Edges: []engine.EdgeDecl{
		{From: engine.Ref{Kind: "file", Name: "blocker"}, To: engine.Ref{Kind: "file", Name: "a"}},
	}}
	g, err := engine.Compile(t.Context(), d, restest.Logger(t))
	must(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := engine.New(engine.Config{Logger: restest.Logger(t), ConvergedTimeout: 0})
	err = e.Run(ctx, g)
	if err == nil || !strings.Contains(err.Error(), "file[blocker]") {
		t.Fatalf("run: %v; want the failure of file[blocker]", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the run did not end")
	}
	for _, name := range []string{"b", "c"} {
		if _, err := os.Stat(dir + "/sub/" + name); err != nil {
			t.Errorf("%s not written before the run ended: %v", name, err)
		}
	}
	if _, err := os.Stat(dir + "/sub/a"); err == nil {
		t.Error("a written although the blocker it depends on failed")
	}
}
