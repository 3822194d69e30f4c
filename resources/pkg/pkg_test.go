package pkg

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/pkg/packagekit"
)

func newPkg(name, state string) *Pkg {
	p := &Pkg{State: state}
	p.SetName(name)
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name, state string
		err         string // "" valid, else a part of the message
	}{
		{"nginx", "", ""},
		{"nginx", "installed", ""},
		{"nginx", "uninstalled", ""},
		{"nginx", "newest", ""},
		{"nginx", "1.22.1-9", ""},
		{"nginx", "2:1.4.2-1+deb12u1", ""},
		{"nginx", "instaled", `state: "instaled" is invalid: want installed (the default), uninstalled, newest, or a version`},
		{"nginx", "1.0 beta", `state: "1.0 beta" is invalid`},
		{"nginx", "1.0;all", `state: "1.0;all" is invalid`},
		{"", "", "name: missing"},
		{"ngi nx", "", `name: "ngi nx" is not a package name`},
		{"a;1.0;all;", "", `is not a package name`},
	}
	for _, tt := range tests {
		err := newPkg(tt.name, tt.state).Validate()
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q %q: %v", tt.name, tt.state, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q %q: error %v, want one containing %q", tt.name, tt.state, err, tt.err)
		}
	}
}

func TestGroup(t *testing.T) {
	a, b, c := newPkg("a", ""), newPkg("b", "uninstalled"), newPkg("c", "1.0")
	g, err := a.Group([]engine.Res{b, c})
	if err != nil {
		t.Fatal(err)
	}
	gp := g.(*Pkg)
	if got := names(gp.all()); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("group manages %v", got)
	}
	if got := gp.UIDs(); len(got) != 3 || got[2] != (engine.UID{Kind: "pkg", Key: "c"}) {
		t.Errorf("group UIDs %v", got)
	}
	// A group of groups is flat.
	d := newPkg("d", "newest")
	gg, err := d.Group([]engine.Res{gp})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(gg.(*Pkg).all()); !reflect.DeepEqual(got, []string{"d", "a", "b", "c"}) {
		t.Errorf("group of a group manages %v", got)
	}
	if a.GroupKey() != c.GroupKey() {
		t.Errorf("states split groups: %q vs %q", a.GroupKey(), c.GroupKey())
	}
	u := newPkg("u", "")
	u.AllowUntrusted = true
	if u.GroupKey() == a.GroupKey() {
		t.Errorf("allowuntrusted does not split groups: %q", u.GroupKey())
	}
	if _, err := a.Group([]engine.Res{u}); err == nil {
		t.Error("grouped packages with different allow* parameters")
	}
	if _, err := a.Group([]engine.Res{newPkg("a", "newest")}); err == nil {
		t.Error("grouped a package with itself")
	}
}

// The engine groups three pkg vertices the graph does not order into one,
// keeps one with meta autogroup false apart, and one with other allow*
// parameters apart.
func TestCompileGroups(t *testing.T) {
	mk := func(p *Pkg) *engine.Vertex {
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		m := engine.DefaultMeta()
		m.AutoEdge = false // no PackageKit here
		return &engine.Vertex{Kind: "pkg", Name: p.name, Meta: m, Res: p}
	}
	off := mk(newPkg("off", ""))
	off.Meta.AutoGroup = false
	free := newPkg("free", "")
	free.AllowNonFree = true
	d := &engine.Decl{Name: "t", Vertices: []*engine.Vertex{
		mk(newPkg("c", "")), mk(newPkg("a", "newest")), mk(newPkg("b", "uninstalled")), off, mk(free),
	}}
	g, err := engine.Compile(context.Background(), d, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := `Vertices(3):
  pkg[autogroup:(a,b,c)]
  pkg[free]
  pkg[off]
Edges(0):
`
	if got := g.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEdgesFor(t *testing.T) {
	got := edgesFor([]string{
		"/.", "/etc", "/etc/foo.conf", "/usr", "/usr/share", "/usr/share/foo", "/usr/share/foo/data",
		"/usr/share/foo/empty", "/lib", "/lib/systemd", "/lib/systemd/system", "/lib/systemd/system/foo.service",
		"/lib/systemd/system/foo.service.d", "/usr/lib/systemd/system/foo.socket",
		"/lib/systemd/system/multi-user.target.wants/foo.service", "/usr/share/doc/foo/copyright",
	})
	var lines []string
	for _, e := range got {
		var uids []string
		for _, u := range e.UIDs {
			uids = append(uids, u.Kind+":"+u.Key)
		}
		lines = append(lines, fmt.Sprintf("%v %s", e.Before, strings.Join(uids, " ")))
	}
	want := []string{
		"true file:/etc/foo.conf file:/etc/foo.conf/",
		"true file:/lib/systemd/system/foo.service file:/lib/systemd/system/foo.service/",
		"true svc:foo.service",
		"true file:/lib/systemd/system/foo.service.d file:/lib/systemd/system/foo.service.d/",
		"true file:/lib/systemd/system/multi-user.target.wants/foo.service file:/lib/systemd/system/multi-user.target.wants/foo.service/",
		"true file:/usr/lib/systemd/system/foo.socket file:/usr/lib/systemd/system/foo.socket/",
		"true svc:foo.socket",
		"true file:/usr/share/doc/foo/copyright file:/usr/share/doc/foo/copyright/",
		"true file:/usr/share/foo/data file:/usr/share/foo/data/",
		"true file:/usr/share/foo/empty file:/usr/share/foo/empty/",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// makePlan turns what Resolve said into transactions, for every kind of
// state.
func TestMakePlan(t *testing.T) {
	pk := func(info packagekit.Info, id string) packagekit.Package {
		return packagekit.Package{Info: info, ID: id}
	}
	inst, avail := packagekit.InfoInstalled, packagekit.InfoAvailable
	idx := index([]packagekit.Package{
		pk(inst, "have;1.0;all;manual:local"),
		pk(avail, "missing;1.0;all;local"),
		pk(avail, "missing;1.0;all;local"), // the apt backend repeats itself
		pk(inst, "old;1.0;all;manual:local"),
		pk(avail, "old;2.0;all;local"),
		pk(inst, "ver;2.0;all;manual:local"),
		pk(avail, "other;1.0;all;local"),
	})
	members := []*Pkg{
		newPkg("have", ""), newPkg("missing", ""), newPkg("have", "uninstalled"), newPkg("old", "newest"),
		newPkg("have", "newest"), newPkg("ver", "1.0"), newPkg("ver", "2.0"), newPkg("gone", ""),
		newPkg("gone", "uninstalled"), newPkg("missing", "newest"), newPkg("other", "3.0"),
	}
	pl := makePlan(members, idx)
	show := func(ts []target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.id+"<"+t.from)
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct{ what, got, want string }{
		{"remove", show(pl.remove), "have;1.0;all;manual:local<1.0"},
		{"install", show(pl.install), "missing;1.0;all;local< missing;1.0;all;local<"},
		{"update", show(pl.update), "old;2.0;all;local<1.0"},
		{"version", show(pl.version), "ver;1.0;all;manual:local<2.0 other;3.0;all;local<"},
		{"missing", strings.Join(names(pl.missing), " "), "gone"},
	} {
		if c.got != c.want {
			t.Errorf("%s: %q, want %q", c.what, c.got, c.want)
		}
	}
	rec := &changeRec{}
	pl.report(engine.WithRecorder(context.Background(), rec))
	var got []string
	for _, c := range rec.cs {
		got = append(got, fmt.Sprintf("%s: %s -> %s (%s)", c.Property, c.From, c.To, c.Why))
		if want := "pkg[" + strings.TrimPrefix(c.Property, "package ") + "]"; c.Res != want {
			t.Errorf("%s: change of member %q, want %q", c.Property, c.Res, want)
		}
	}
	want := []string{
		"package have: 1.0 -> absent (remove)",
		"package missing: absent -> 1.0 (install)",
		"package missing: absent -> 1.0 (install)",
		"package old: 1.0 -> 2.0 (upgrade)",
		"package ver: 2.0 -> 1.0 (install version)",
		"package other: absent -> 3.0 (install version)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("reported\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

type changeRec struct{ cs []engine.Change }

func (r *changeRec) Record(c engine.Change) { r.cs = append(r.cs, c) }
