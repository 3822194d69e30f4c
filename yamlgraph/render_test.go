package yamlgraph

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/facts"
)

// web1 is the host most tests render for.
var web1 = &facts.Data{
	Hostname: "web1", FQDN: "web1.example.com",
	Labels: map[string]string{"role": "web", "zone": "eu-1"},
	Facts:  map[string]any{"os": map[string]any{"id": "debian"}, "cpus": 4},
}

func paramsOf(t *testing.T, g *Graph) string {
	t.Helper()
	var b strings.Builder
	for _, v := range g.Vertices {
		p, err := Params(v.Res)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(v.String() + "\n" + string(p))
	}
	return b.String()
}

func TestRender(t *testing.T) {
	src := `resources:
  file:
  - name: "motd-{{ .Hostname }}"
    path: /etc/motd-{{ .Labels.role }}
    content: |
      host {{ .FQDN }} on {{ .Facts.os.id }}
      {{ if ge .Facts.cpus 4 }}big{{ else }}small{{ end }}
      {{ index .Labels "missing" | default "none" }} {{ "a,b" | upper }} {{ replace "-" "_" .Labels.zone }}
`
	g, err := ParseWith("g.yaml", []byte(src), Options{Host: web1})
	if err != nil {
		t.Fatal(err)
	}
	got := paramsOf(t, g)
	for _, want := range []string{"file[motd-web1]", "path: /etc/motd-web", "host web1.example.com on debian\n", "big\n", "none A,B eu_1"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered graph lacks %q:\n%s", want, got)
		}
	}
	if g.Selection.Host != "web1" || g.Selection.Templates != 3 {
		t.Errorf("selection %+v, want host web1 and 3 templates", g.Selection)
	}
	// Deterministic: the same host renders the same graph, byte for byte.
	again, err := ParseWith("g.yaml", []byte(src), Options{Host: web1})
	if err != nil {
		t.Fatal(err)
	}
	if a := paramsOf(t, again); a != got {
		t.Errorf("two renders differ:\n%s\nvs\n%s", got, a)
	}
}

// A fact's value holding "{{" is never rendered again: no template
// injection from labels, even through an alias that shares the node.
func TestRenderNoInjection(t *testing.T) {
	h := &facts.Data{Hostname: "h", Labels: map[string]string{"note": "{{ .Hostname }}"}}
	src := `resources:
  file:
  - name: a
    path: /tmp/a
    content: &c "{{ .Labels.note }}"
  - name: b
    path: /tmp/b
    content: *c
`
	g, err := ParseWith("g.yaml", []byte(src), Options{Host: h})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range g.Vertices {
		p, _ := Params(v.Res)
		if !strings.Contains(string(p), `content: '{{ .Hostname }}'`) {
			t.Errorf("%s: the label's text was not kept literal:\n%s", v, p)
		}
	}
}

// Template errors name the file, line and column of the template in the
// graph, inside multi-line values too, and what would be valid.
func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string // under resources: file: - name: x (line 3)
		host *facts.Data
		want string
	}{
		{"unknown function", `    path: "/tmp/{{ upperr .Hostname }}"`, web1,
			`g.yaml:4:20: file[x]: template: function "upperr" not defined`},
		{"unknown fact", `    path: /tmp/{{ .Facts.os.idd }}`, web1,
			`g.yaml:4:19: file[x]: template: .Facts.os.idd: map has no entry for key "idd": no such fact (did you mean "id"?): ` + "`mgmt facts`" + ` prints every fact by name (docs/fleet.md)`},
		{"unknown fact without a host", `    path: /tmp/{{ .Facts.kernal }}`, nil,
			`g.yaml:4:19: file[x]: template: .Facts.kernal: map has no entry for key "kernal": no such fact (did you mean "kernel"?): ` + "`mgmt facts`" + ` prints every fact by name (docs/fleet.md)`},
		{"unknown field", `    path: '/tmp/{{ .Hostnme }}'`, nil,
			`g.yaml:4:20: file[x]: template: .Hostnme: can't evaluate field Hostnme in type facts.Data`},
		{"missing label, line 3 of a block", "    path: /tmp/x\n    content: |\n      one\n      two {{ .Hostname }}\n      three {{ .Labels.db }}\n", web1,
			`g.yaml:8:16: file[x]: template: .Labels.db: map has no entry for key "db": host web1 has no label db (its labels: role, zone): give it with --label db=VALUE, or write {{ index .Labels "db" | default "VALUE" }}`},
		{"unclosed action", "    path: /tmp/x\n    content: |\n      one {{ .Hostname\n", web1,
			`g.yaml:6:11: file[x]: template: unclosed action: close it with }}`},
		{"template call", `    path: "/tmp/{{ template \"v\" }}"`, web1,
			`g.yaml:4:17: file[x]: template: {{ template }} is not supported in graph values: write the text out`},
		{"range over a number", `    path: "/tmp/{{ range .Facts.cpus }}{{ range $.Facts.cpus }}{{ range 100000 }}{{ end }}{{ end }}{{ end }}"`,
			&facts.Data{Hostname: "h", Facts: map[string]any{"cpus": 64}},
			`g.yaml:4:11: file[x]: template: the templates of the file iterate more than 1048576 times in {{ range }}`},
		{"doubling a string", `    path: '/tmp/{{ $a := printf "%0999999d" 0 }}{{ $a = printf "%s%s" $a $a }}{{ $a }}'`, web1,
			`g.yaml:4:11: file[x]: template: the value renders to more than 1048576 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "resources:\n  file:\n  - name: x\n" + tt.src + "\n"
			_, err := ParseWith("g.yaml", []byte(src), Options{Host: tt.host})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("got %v, want Errors", err)
			}
			if len(es) != 1 || es[0].Error() != tt.want {
				t.Errorf("got\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// The templated corpus (also FuzzParse's seeds) is valid for no host and
// for web1.
func TestRenderCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/render/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	h := *web1
	h.Facts = probeData(nil).Facts
	for _, f := range files {
		for _, host := range []*facts.Data{nil, &h} {
			if _, err := ParseFileWith(f, Options{Host: host}); err != nil {
				t.Errorf("host %v: %v", host != nil, err)
			}
		}
	}
}

// A function is refused before it builds what its result would be
// refused for: printf, print and join with many uses of a 1 MB string
// once allocated 800 MB (and more, without end, with more uses) before
// their results were measured. A loop of such calls is bounded by the
// file's budget.
func TestTemplateFunctionsBoundedBeforeBuilding(t *testing.T) {
	many := func(s string, n int) string { return strings.TrimSpace(strings.Repeat(s+" ", n)) }
	big := `{{ $x := printf "%0999999d" 1 }}`
	tests := []struct{ name, value, want string }{
		{"printf", big + `{{ printf "` + strings.Repeat("%[1]s", 200) + `" $x }}`, "could build more than"},
		{"printf widths", `{{ printf "` + strings.Repeat("%0999999[1]d", 200) + `" 1 }}`, "could build more than"},
		{"print", big + `{{ print ` + many("$x", 200) + ` }}`, "renders to more than"},
		{"println", big + `{{ println ` + many("$x", 200) + ` }}`, "renders to more than"},
		{"html", big + `{{ html ` + many("$x", 200) + ` }}`, "renders to more than"},
		{"loop", big + `{{ range 1000000 }}{{ $y := printf "%s" $x }}{{ end }}`, "build more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "resources:\n  noop:\n  - name: x\n    comment: '" + tt.value + "'\n"
			var err error
			n := allocated(func() { _, err = ParseWith("g.yaml", []byte(src), Options{Host: web1}) })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
			if n > 512<<20 {
				t.Fatalf("allocated %d MiB before refusing", n>>20)
			}
		})
	}
}
