package yamlgraph

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/facts"
)

const selectGraph = `resources:
  noop:
  - name: everywhere
  - name: web
    meta: {hosts: ["web-*", "lb1"]}
  - name: db
    meta: {hosts: [db1], retry: 2}
  - name: eu-web
    meta: {labels: {role: web, zone: eu-1}}
  - name: "@@exported-db"
    meta: {labels: {role: db}}
edges:
- {name: e1, from: {kind: noop, name: everywhere}, to: {kind: noop, name: web}}
- {name: e2, from: {kind: noop, name: db}, to: {kind: noop, name: everywhere}}
- {name: e3, from: {kind: noop, name: eu-web}, to: {kind: noop, name: "@@exported-db"}}
`

func names(g *Graph) []string {
	var out []string
	for _, v := range g.Vertices {
		out = append(out, v.Name)
	}
	return out
}

func TestHostSelection(t *testing.T) {
	tests := []struct {
		host    string
		labels  map[string]string
		want    []string
		dropped []string // edge names
	}{
		{"web-3", map[string]string{"role": "web", "zone": "eu-1"}, []string{"everywhere", "web", "eu-web"}, []string{"e2", "e3"}},
		{"web-3", map[string]string{"role": "web", "zone": "us-1"}, []string{"everywhere", "web"}, []string{"e2", "e3"}},
		{"lb1", nil, []string{"everywhere", "web"}, []string{"e2", "e3"}},
		{"web", nil, []string{"everywhere"}, []string{"e1", "e2", "e3"}},
		{"db1", map[string]string{"role": "db"}, []string{"everywhere", "db", "exported-db"}, []string{"e1", "e3"}},
		{"db10", map[string]string{"role": "db", "zone": "eu-1"}, []string{"everywhere", "exported-db"}, []string{"e1", "e2", "e3"}},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			h := &facts.Data{Hostname: tt.host, Labels: tt.labels}
			g, err := ParseWith("g.yaml", []byte(selectGraph), Options{Host: h})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(g); !slices.Equal(got, tt.want) {
				t.Errorf("resources %v, want %v", got, tt.want)
			}
			var dropped []string
			for _, d := range g.Selection.Dropped {
				dropped = append(dropped, d.Name)
			}
			if !slices.Equal(dropped, tt.dropped) {
				t.Errorf("dropped edges %v, want %v", dropped, tt.dropped)
			}
			if len(g.Edges)+len(dropped) != 3 {
				t.Errorf("%d edges kept and %d dropped, of 3", len(g.Edges), len(dropped))
			}
			if len(g.Selection.Left)+len(g.Vertices) != 5 {
				t.Errorf("%d resources left out and %d kept, of 5: %+v", len(g.Selection.Left), len(g.Vertices), g.Selection.Left)
			}
			// meta hosts and labels are not engine meta; the rest is.
			for _, v := range g.Vertices {
				if v.Name == "db" && v.Meta.Retry != 2 {
					t.Errorf("db: retry %d, want 2", v.Meta.Retry)
				}
			}
		})
	}
	// Without a host every resource is kept and no edge dropped.
	g, err := Parse("g.yaml", []byte(selectGraph))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Vertices) != 5 || len(g.Edges) != 3 || len(g.Selection.Dropped) != 0 {
		t.Errorf("no host: %v and %d edges, want all 5 and 3", names(g), len(g.Edges))
	}
}

func TestHostSelectionWhy(t *testing.T) {
	h := &facts.Data{Hostname: "db2", Labels: map[string]string{"role": "db"}}
	g, err := ParseWith("g.yaml", []byte(selectGraph), Options{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range g.Selection.Left {
		got = append(got, l.Source+": "+l.Res.String()+": "+l.Why)
	}
	for _, d := range g.Selection.Dropped {
		got = append(got, d.Source+": "+d.Name+": "+d.Why)
	}
	want := []string{
		"g.yaml:4:5: noop[web]: meta hosts [web-*, lb1] do not match host db2",
		"g.yaml:6:5: noop[db]: meta hosts [db1] do not match host db2",
		"g.yaml:8:5: noop[eu-web]: meta labels want role=web; host db2 has role=db",
		"g.yaml:13:3: e1: to noop[web], which is not on this host",
		"g.yaml:14:3: e2: from noop[db], which is not on this host",
		"g.yaml:15:3: e3: from noop[eu-web], which is not on this host",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An exported resource not on this host is not in its graph, so the agent
// does not publish it.
func TestHostSelectionExports(t *testing.T) {
	g, err := ParseWith("g.yaml", []byte(selectGraph), Options{Host: &facts.Data{Hostname: "web-1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range g.Vertices {
		if v.Exported {
			t.Errorf("%s is exported by a host it is not on", v)
		}
	}
}

// One name, one resource per role: each host gets its own, edges to it
// kept; without a host both are checked and neither is a duplicate.
func TestHostSelectionAlternatives(t *testing.T) {
	src := `resources:
  file:
  - name: "conf"
    path: /etc/web.conf
    meta: {labels: {role: web}}
  - name: "conf"
    path: /etc/db.conf
    meta: {labels: {role: db}}
  - name: "cache-{{ .Labels.role }}"
    path: /var/cache/{{ .Labels.role }}
    meta: {labels: {role: web}}
  - name: "cache-{{ .Labels.role }}"
    path: /var/cache/{{ .Labels.role }}
    meta: {labels: {role: db}}
  noop:
  - name: after
edges:
- {from: {kind: file, name: conf}, to: {kind: noop, name: after}}
- {from: {kind: file, name: "cache-{{ .Labels.role }}"}, to: {kind: noop, name: after}}
`
	for _, role := range []string{"web", "db"} {
		g, err := ParseWith("g.yaml", []byte(src), Options{Host: &facts.Data{Hostname: "h", Labels: map[string]string{"role": role}}})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := names(g), []string{"conf", "cache-" + role, "after"}; !slices.Equal(got, want) || len(g.Edges) != 2 {
			t.Errorf("role %s: %v and %d edges, want %v and 2", role, got, len(g.Edges), want)
		}
	}
	if _, err := Parse("g.yaml", []byte(src)); err != nil {
		t.Errorf("no host: %v", err)
	}
	// Without a selection, one name twice is still a duplicate.
	dup := strings.Replace(strings.Replace(src, "    meta: {labels: {role: web}}\n", "", 1), "    meta: {labels: {role: db}}\n", "", 1)
	if _, err := Parse("g.yaml", []byte(dup)); err == nil || !strings.Contains(err.Error(), "duplicate resource") {
		t.Errorf("a name twice without selection: %v, want a duplicate", err)
	}
}

func TestHostSelectionErrors(t *testing.T) {
	tests := []struct{ meta, want string }{
		{`{hosts: ["web-[", db1]}`, `g.yaml:4:20: noop[a]: meta hosts: "web-[" is not a valid glob (syntax error in pattern): * matches any run of characters, ? one, [a-z] one of a set, \ escapes`},
		{`{hosts: web-*}`, `g.yaml:4:19: noop[a]: meta hosts: want a list of hostname globs, e.g. hosts: [web-*, db1], found string "web-*"`},
		{`{hosts: []}`, `g.yaml:4:19: noop[a]: meta hosts: an empty list puts the resource on no host: list hostname globs, or remove hosts to put it on every host`},
		{`{hosts: ["{{ .Hostname }}"]}`, `g.yaml:4:20: noop[a]: meta hosts: "{{ .Hostname }}": host selection takes no templates: write the globs out`},
		{`{labels: [role]}`, `g.yaml:4:20: noop[a]: meta labels: want a mapping of label keys to values, e.g. labels: {role: web}, found a list`},
		{`{labels: {"ro le": web}}`, `g.yaml:4:21: noop[a]: meta labels: label "ro le=web": key has ' ' at byte 2; a key is 1 to 63 of A-Z a-z 0-9 _ . - /, starting and ending with a letter or digit`},
		{`{labels: {role: }}`, `g.yaml:4:27: noop[a]: meta labels: role: want a value, found nothing`},
		{`{hostz: [a]}`, `g.yaml:4:12: noop[a]: meta: unknown field "hostz" (did you mean "hosts"?); valid fields: autoedge, autogroup, burst, delay, limit, noop, poll, retry, sema, sensitive, timeout, hosts, labels`},
	}
	for _, tt := range tests {
		t.Run(tt.meta, func(t *testing.T) {
			src := "resources:\n  noop:\n  - name: a\n    meta: " + tt.meta + "\n"
			for _, h := range []*facts.Data{nil, {Hostname: "web-1"}} {
				_, err := ParseWith("g.yaml", []byte(src), Options{Host: h})
				var es Errors
				if !errors.As(err, &es) || len(es) != 1 || !strings.HasPrefix(es[0].Error(), tt.want) {
					t.Errorf("host %v: got\n%v\nwant\n%s", h != nil, err, tt.want)
				}
			}
		})
	}
}
