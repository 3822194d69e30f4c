package svc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

func TestSetName(t *testing.T) {
	for name, want := range map[string]string{
		"nginx":              "nginx.service",
		"nginx.service":      "nginx.service",
		"getty@tty1":         "getty@tty1.service",
		"sshd.socket":        "sshd.socket",
		"multi-user.target":  "multi-user.target",
		"foo.bar":            "foo.bar.service",
		"systemd-tmpfiles-x": "systemd-tmpfiles-x.service",
	} {
		r := &Svc{}
		r.SetName(name)
		if r.Unit() != want {
			t.Errorf("SetName(%q): unit %q, want %q", name, r.Unit(), want)
		}
	}
}

// params are a Svc's parameters, as a value to compare and copy.
type params struct {
	State, Startup, OnRefresh string
	Session                   bool
}

func (p params) svc() *Svc {
	return &Svc{State: p.State, Startup: p.Startup, OnRefresh: p.OnRefresh, Session: p.Session}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		res  params
		errs []string // substrings of the error, one per problem; none: valid
	}{
		{"nginx", params{}, nil},
		{"nginx", params{State: StateRunning, Startup: StartupEnabled, OnRefresh: RefreshReload}, nil},
		{"nginx", params{State: StateStopped, Startup: StartupDisabled, OnRefresh: RefreshTryRestart, Session: true}, nil},
		{"getty@tty1", params{State: StateRunning}, nil},
		{"nginx", params{State: "started"}, []string{`state: "started" is invalid: want running, stopped`}},
		{"nginx", params{Startup: "on"}, []string{`startup: "on" is invalid: want enabled, disabled`}},
		{"nginx", params{OnRefresh: "bounce"}, []string{`refresh: "bounce" is invalid: want restart (the default), reload or try-restart`}},
		{"", params{}, []string{"name: missing"}},
		{"a/b", params{}, []string{`"a/b.service" is not a unit name: it contains '/'`}},
		{"a b", params{}, []string{`it contains ' '`}},
		{"caf\u00e9", params{}, []string{`contains 'é'`}},
		{"getty@", params{}, []string{"is a template: name an instance"}},
		{"x", params{State: "up", Startup: "yes"}, []string{`state: "up"`, `startup: "yes"`}},
	}
	for _, tt := range tests {
		r := tt.res.svc()
		if tt.name != "" {
			r.SetName(tt.name)
		}
		err := r.Validate()
		if len(tt.errs) == 0 {
			if err != nil {
				t.Errorf("%s %+v: %v", tt.name, tt.res, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s %+v: valid, want %q", tt.name, tt.res, tt.errs)
			continue
		}
		for _, want := range tt.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s %+v: %q lacks %q", tt.name, tt.res, err, want)
			}
		}
		if n := len(strings.Split(err.Error(), "\n")); n != len(tt.errs) {
			t.Errorf("%s %+v: %d problems reported, want %d: %v", tt.name, tt.res, n, len(tt.errs), err)
		}
	}
}

// The YAML form: parameters by their names, strict, and the name as unit.
func TestDecode(t *testing.T) {
	g, err := yamlgraph.Parse("test.yaml", []byte(`graph: g
resources:
  svc:
  - name: nginx
    state: running
    startup: enabled
    refresh: reload
  - name: sshd.socket
    state: stopped
    session: false
edges: []
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]params{}
	for _, v := range g.Vertices {
		r := v.Res.(*Svc)
		got[r.Unit()] = params{State: r.State, Startup: r.Startup, OnRefresh: r.OnRefresh, Session: r.Session}
	}
	want := map[string]params{
		"nginx.service": {State: StateRunning, Startup: StartupEnabled, OnRefresh: RefreshReload},
		"sshd.socket":   {State: StateStopped},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if _, err := yamlgraph.Parse("bad.yaml", []byte("graph: g\nresources:\n  svc:\n  - name: x\n    stat: running\nedges: []\n")); err == nil || !strings.Contains(err.Error(), `unknown field "stat"`) {
		t.Errorf("a misspelled field: %v", err)
	}
}

func TestUIDsAndAutoEdges(t *testing.T) {
	r := &Svc{}
	r.SetName("nginx")
	if got, want := r.UIDs(), []engine.UID{{Kind: "svc", Key: "nginx.service"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("UIDs %v, want %v", got, want)
	}
	edges, err := r.AutoEdges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.AutoEdge{{UIDs: []engine.UID{
		{Kind: "file", Key: "/etc/systemd/system/nginx.service"},
		{Kind: "file", Key: "/run/systemd/system/nginx.service"},
		{Kind: "file", Key: "/lib/systemd/system/nginx.service"},
		{Kind: "file", Key: "/usr/lib/systemd/system/nginx.service"},
	}}}
	if !reflect.DeepEqual(edges, want) {
		t.Errorf("AutoEdges %v, want %v", edges, want)
	}
	s := &Svc{Session: true}
	s.SetName("app")
	edges, _ = s.AutoEdges(context.Background())
	if len(edges) != 1 || !strings.HasSuffix(edges[0].UIDs[0].Key, "/.config/systemd/user/app.service") {
		t.Errorf("a session unit's AutoEdges %v: want the user's unit directories", edges)
	}
}

// A file resource writing the unit file comes before the svc: the engine
// finds the edge through the svc's AutoEdges and the file's UIDs.
func TestAutoEdgeFromUnitFile(t *testing.T) {
	g, err := yamlgraph.Parse("test.yaml", []byte(`graph: g
resources:
  svc:
  - name: app
    state: running
edges: []
`))
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in for the file kind, which this package does not import:
	// only its UID matters to the transform.
	fileVertex := &engine.Vertex{Kind: "file", Name: "unit", Meta: engine.DefaultMeta(),
		Res: uidRes{engine.UID{Kind: "file", Key: "/etc/systemd/system/app.service"}}}
	g.Vertices = append(g.Vertices, fileVertex)
	cg, err := engine.Compile(context.Background(), &g.Decl, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	var svcV *engine.Vertex
	for _, v := range g.Vertices {
		if v.Kind == "svc" {
			svcV = v
		}
	}
	if e, ok := cg.Edge(fileVertex, svcV); !ok || e == nil {
		t.Errorf("no edge file[unit] -> svc[app]:\n%s", cg)
	}
}

// uidRes is a resource that only names a UID.
type uidRes struct{ uid engine.UID }

func (uidRes) Validate() error                                   { return nil }
func (uidRes) Watch(ctx context.Context, ev engine.Events) error { <-ctx.Done(); return nil }
func (uidRes) CheckApply(context.Context, bool) (bool, error)    { return false, nil }
func (uidRes) Close() error                                      { return nil }
func (u uidRes) UIDs() []engine.UID                              { return []engine.UID{u.uid} }

func TestJobErrorMessage(t *testing.T) {
	err := error(&JobError{
		Unit: "app.service", Op: "start", Result: "failed", ActiveState: "failed", SubState: "failed",
		UnitResult: "exit-code", Journal: []string{"app[1]: boom", "systemd[1]: Failed to start app.service."},
		Err: ErrJobFailed,
	})
	want := "start app.service: job failed (job result \"failed\"); the unit is failed (failed), result exit-code; " +
		"last journal lines:\n  app[1]: boom\n  systemd[1]: Failed to start app.service."
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	if !errors.Is(err, ErrJobFailed) || errors.Is(err, ErrJobTimeout) {
		t.Error("errors.Is does not see ErrJobFailed alone")
	}
	u := error(&UnitError{Unit: "x.service", Err: ErrUnknownUnit, Detail: "not installed"})
	if u.Error() != "x.service: no such unit: not installed" || !errors.Is(u, ErrUnknownUnit) {
		t.Errorf("UnitError: %v", u)
	}
}

func TestTypeInterface(t *testing.T) {
	for unit, want := range map[string]string{
		"a.service": "org.freedesktop.systemd1.Service",
		"a.socket":  "org.freedesktop.systemd1.Socket",
		"a.target":  "",
		"a.":        "",
	} {
		if got := typeInterface(unit); got != want {
			t.Errorf("typeInterface(%q) = %q, want %q", unit, got, want)
		}
	}
}

// Without a bus to talk to, Watch and CheckApply fail at once, naming the
// address; nothing is left behind.
func TestNoBus(t *testing.T) {
	addr := "unix:path=" + filepath.Join(t.TempDir(), "nobus")
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	r := &Svc{State: StateRunning}
	r.SetName("x")
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err := r.CheckApply(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), addr) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckApply without a bus: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Watch(ctx, nopEvents{}); err == nil {
		t.Error("Watch without a bus returned nil")
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}

type nopEvents struct{}

func (nopEvents) Running() {}
func (nopEvents) Dirty()   {}
