// Package desired writes one desired state in the language of every tool the
// benchmarks compare: an mgmt graph, a Puppet manifest, an Ansible playbook,
// a CFEngine policy and, for the floor, a shell script.
package desired

import (
	"fmt"
	"path"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Tools the generators write for.
const (
	Mgmt     = "mgmt"
	Puppet   = "puppet"
	Ansible  = "ansible"
	CFEngine = "cfengine"
	Shell    = "shell"
)

// mgmtGraph is the subset of mgmt's graph file the benchmarks write.
type mgmtGraph struct {
	Graph     string                 `yaml:"graph"`
	Comment   string                 `yaml:"comment,omitempty"`
	Resources map[string][]yaml.Node `yaml:"resources"`
	Edges     []mgmtEdge             `yaml:"edges"`
	Collect   []mgmtCollect          `yaml:"collect,omitempty"`
}

type mgmtRef struct {
	Kind string `yaml:"kind"`
	Name string `yaml:"name"`
}

type mgmtEdge struct {
	Name string  `yaml:"name"`
	From mgmtRef `yaml:"from"`
	To   mgmtRef `yaml:"to"`
}

type mgmtCollect struct {
	Kind    string `yaml:"kind"`
	Pattern string `yaml:"pattern"`
}

// mapping builds a YAML mapping node from key, value pairs (values are
// strings, bools or nested nodes), keeping their order.
func mapping(kv ...any) yaml.Node {
	n := yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		var k, v yaml.Node
		k.SetString(kv[i].(string))
		switch val := kv[i+1].(type) {
		case string:
			v.SetString(val)
		case bool:
			v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(val)}
		case yaml.Node:
			v = val
		default:
			panic(fmt.Sprintf("desired: mapping value of type %T", val))
		}
		n.Content = append(n.Content, &k, &v)
	}
	return n
}

func marshalGraph(g mgmtGraph) []byte {
	b, err := yaml.Marshal(g)
	if err != nil {
		// Only our own well-formed structures are marshalled.
		panic(fmt.Sprintf("desired: marshalling graph %s: %v", g.Graph, err))
	}
	return b
}

// puppetString quotes s as a double-quoted Puppet string.
func puppetString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

// cfString quotes s as a double-quoted CFEngine string. CFEngine expands
// $(...) and @(...) inside strings and has no escape for them, so the
// contents the benchmarks use must not contain "$(" , "${", "@(" or "@{".
func cfString(s string) string {
	for _, bad := range []string{"$(", "${", "@(", "@{"} {
		if strings.Contains(s, bad) {
			panic(fmt.Sprintf("desired: %q cannot be written literally in CFEngine", s))
		}
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func yamlDoc(v any) []byte {
	b, err := yaml.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("desired: marshalling: %v", err))
	}
	return b
}

// cfControl is the head of every CFEngine policy: one bundle, main.
const cfControl = `body common control
{
  bundlesequence => { "main" };
}

`

// Files is a tree of N regular files with given contents, 100 to a
// directory, under Root (Root itself and the directories are part of the
// desired state: no tool is relied on to create missing parents).
type Files struct {
	Root string // absolute, without a trailing slash
	N    int
}

// PerDir is how many files share one directory.
const PerDir = 100

// Dirs returns the directories, Root first, without trailing slashes.
func (f Files) Dirs() []string {
	dirs := []string{f.Root}
	for d := 0; d*PerDir < f.N; d++ {
		dirs = append(dirs, fmt.Sprintf("%s/d%03d", f.Root, d))
	}
	return dirs
}

// Path returns the path of file i.
func (f Files) Path(i int) string {
	return fmt.Sprintf("%s/d%03d/f%05d", f.Root, i/PerDir, i)
}

// Content returns the desired content of file i.
func (f Files) Content(i int) string {
	return fmt.Sprintf("bench file %d\nthe same content for every tool\n", i)
}

// Mgmt is the tree as an mgmt graph: one file resource per directory (path
// ending in /) and per file.
func (f Files) Mgmt() []byte {
	var res []yaml.Node
	for i, d := range f.Dirs() {
		res = append(res, mapping("name", fmt.Sprintf("dir%d", i), "path", d+"/"))
	}
	for i := 0; i < f.N; i++ {
		res = append(res, mapping("name", fmt.Sprintf("f%d", i), "path", f.Path(i), "content", f.Content(i)))
	}
	return marshalGraph(mgmtGraph{
		Graph:     fmt.Sprintf("files-%d", f.N),
		Resources: map[string][]yaml.Node{"file": res},
		Edges:     []mgmtEdge{},
	})
}

// Puppet is the tree as Puppet file resources (directories first by
// Puppet's own autorequire).
func (f Files) Puppet() []byte {
	var b strings.Builder
	for _, d := range f.Dirs() {
		fmt.Fprintf(&b, "file { %s: ensure => directory }\n", puppetString(d))
	}
	for i := 0; i < f.N; i++ {
		fmt.Fprintf(&b, "file { %s: ensure => file, content => %s }\n", puppetString(f.Path(i)), puppetString(f.Content(i)))
	}
	return []byte(b.String())
}

// Ansible is the tree as a playbook for one local host: the file module
// over the directories, then the copy module over the files (a loop, the
// idiomatic form). Facts are not gathered: no task needs them.
func (f Files) Ansible() []byte {
	type item struct {
		Path    string `yaml:"path"`
		Content string `yaml:"content"`
	}
	items := make([]item, f.N)
	for i := range items {
		items[i] = item{f.Path(i), f.Content(i)}
	}
	play := []map[string]any{{
		"name":         fmt.Sprintf("files-%d", f.N),
		"hosts":        "all",
		"gather_facts": false,
		"vars":         map[string]any{"bench_dirs": f.Dirs(), "bench_files": items},
		"tasks": []map[string]any{
			{
				"name":                 "directories",
				"ansible.builtin.file": map[string]string{"path": "{{ item }}", "state": "directory"},
				"loop":                 "{{ bench_dirs }}",
				"loop_control":         map[string]string{"label": "{{ item }}"},
			},
			{
				"name":                 "files",
				"ansible.builtin.copy": map[string]string{"dest": "{{ item.path }}", "content": "{{ item.content }}"},
				"loop":                 "{{ bench_files }}",
				"loop_control":         map[string]string{"label": "{{ item.path }}"},
			},
		},
	}}
	return yamlDoc(play)
}

// CFEngine is the tree as files promises: directories ("DIR/." with create)
// and files with create and content.
func (f Files) CFEngine() []byte {
	var b strings.Builder
	b.WriteString(cfControl)
	b.WriteString("bundle agent main\n{\n  files:\n")
	for _, d := range f.Dirs() {
		fmt.Fprintf(&b, "    %s\n      create => \"true\";\n", cfString(d+"/."))
	}
	for i := 0; i < f.N; i++ {
		fmt.Fprintf(&b, "    %s\n      create => \"true\",\n      content => %s;\n", cfString(f.Path(i)), cfString(f.Content(i)))
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// Shell is the floor: a bash script that makes each missing directory and
// writes each file whose content differs, with builtins only (no process
// per file, no temporary file, no fsync).
func (f Files) Shell() []byte {
	var b strings.Builder
	b.WriteString(`set -eu
d() { [ -d "$1" ] || mkdir "$1"; }
f() {
	local c=
	if [ -e "$1" ]; then IFS= read -r -d '' c <"$1" || true; fi
	[ "$c" == "$2" ] || printf '%s' "$2" >"$1"
}
`)
	for _, d := range f.Dirs() {
		fmt.Fprintf(&b, "d %s\n", shQuote(d))
	}
	for i := 0; i < f.N; i++ {
		fmt.Fprintf(&b, "f %s %s\n", shQuote(f.Path(i)), shQuote(f.Content(i)))
	}
	return []byte(b.String())
}

// Packages is a set of packages to have installed.
type Packages struct {
	Names []string
	// Ungrouped sets meta autogroup: false on every mgmt pkg resource, so
	// that each is its own PackageKit transaction.
	Ungrouped bool
	// AllowUnsupported sets allowunsupported: true on every mgmt pkg
	// resource: PackageKit does not count a local repository as the
	// distribution's own (the other tools do not ask).
	AllowUnsupported bool
}

// Mgmt is the set as pkg resources.
func (p Packages) Mgmt() []byte {
	var res []yaml.Node
	for _, n := range p.Names {
		kv := []any{"name", n, "state", "installed"}
		if p.AllowUnsupported {
			kv = append(kv, "allowunsupported", true)
		}
		if p.Ungrouped {
			kv = append(kv, "meta", mapping("autogroup", false))
		}
		res = append(res, mapping(kv...))
	}
	name := "pkgs"
	if p.Ungrouped {
		name = "pkgs-ungrouped"
	}
	return marshalGraph(mgmtGraph{Graph: name, Resources: map[string][]yaml.Node{"pkg": res}, Edges: []mgmtEdge{}})
}

// Puppet is the set as one package resource with an array title (Puppet
// makes one resource, and one apt-get run, per package).
func (p Packages) Puppet() []byte {
	q := make([]string, len(p.Names))
	for i, n := range p.Names {
		q[i] = puppetString(n)
	}
	return []byte(fmt.Sprintf("package { [%s]: ensure => installed }\n", strings.Join(q, ", ")))
}

// Ansible is the set as one apt task with a list of names (one apt
// transaction, the idiomatic form).
func (p Packages) Ansible() []byte {
	return yamlDoc([]map[string]any{{
		"name":         "pkgs",
		"hosts":        "all",
		"gather_facts": false,
		"tasks": []map[string]any{{
			"name":                "packages",
			"ansible.builtin.apt": map[string]any{"name": p.Names, "state": "present"},
		}},
	}})
}

// CFEngineModuleBody is the package_module body the CFEngine policy uses:
// the masterfiles' apt_get module, with the installed-packages query never
// cached (the benchmark removes packages behind CFEngine's back).
const CFEngineModuleBody = `body package_module apt_get
{
  query_installed_ifelapsed => "0";
  query_updates_ifelapsed => "0";
  interpreter => "/usr/bin/python3";
}
`

// CFEngine is the set as packages promises through the apt_get package
// module.
func (p Packages) CFEngine() []byte {
	var b strings.Builder
	b.WriteString(cfControl)
	b.WriteString(CFEngineModuleBody)
	b.WriteString("\nbundle agent main\n{\n  packages:\n")
	for _, n := range p.Names {
		fmt.Fprintf(&b, "    %s\n      policy => \"present\",\n      package_module => apt_get;\n", cfString(n))
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// Execs are four commands of Sleep seconds each: 1 -> 2 -> 3 in a chain
// and 4 alone. Each command is `env STEP=i sleep S`, so that no tool can
// take two of them for one.
type Execs struct {
	Sleep string // seconds, as sleep(1) takes them: "2", "0.5"
}

// Argv returns command i (1 to 4).
func (e Execs) Argv(i int) []string {
	return []string{"/usr/bin/env", fmt.Sprintf("STEP=%d", i), "/bin/sleep", e.Sleep}
}

func (e Execs) cmd(i int) string { return strings.Join(e.Argv(i), " ") }

// Mgmt is the four as exec resources with two edges.
func (e Execs) Mgmt() []byte {
	var res []yaml.Node
	for i := 1; i <= 4; i++ {
		res = append(res, mapping("name", fmt.Sprintf("s%d", i), "cmd", e.cmd(i)))
	}
	ref := func(i int) mgmtRef { return mgmtRef{"exec", fmt.Sprintf("s%d", i)} }
	return marshalGraph(mgmtGraph{
		Graph:     "execs",
		Resources: map[string][]yaml.Node{"exec": res},
		Edges:     []mgmtEdge{{"s1-s2", ref(1), ref(2)}, {"s2-s3", ref(2), ref(3)}},
	})
}

// Puppet is the four as exec resources, the chain by require.
func (e Execs) Puppet() []byte {
	var b strings.Builder
	for i := 1; i <= 4; i++ {
		req := ""
		if i == 2 || i == 3 {
			req = fmt.Sprintf(", require => Exec['s%d']", i-1)
		}
		fmt.Fprintf(&b, "exec { 's%d': command => %s%s }\n", i, puppetString(e.cmd(i)), req)
	}
	return []byte(b.String())
}

// Ansible is the four as command tasks, in order.
func (e Execs) Ansible() []byte {
	var tasks []map[string]any
	for i := 1; i <= 4; i++ {
		tasks = append(tasks, map[string]any{
			"name":                    fmt.Sprintf("s%d", i),
			"ansible.builtin.command": map[string]any{"argv": e.Argv(i)},
		})
	}
	return yamlDoc([]map[string]any{{"name": "execs", "hosts": "all", "gather_facts": false, "tasks": tasks}})
}

// CFEngine is the four as commands promises, in order.
func (e Execs) CFEngine() []byte {
	var b strings.Builder
	b.WriteString(cfControl)
	b.WriteString("bundle agent main\n{\n  commands:\n")
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&b, "    %s;\n", cfString(e.cmd(i)))
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// Shell is the floor: the chain in a subshell beside the lone command.
func (e Execs) Shell() []byte {
	return []byte(fmt.Sprintf("(%s; %s; %s) &\n%s\nwait\n", e.cmd(1), e.cmd(2), e.cmd(3), e.cmd(4)))
}

// Noops is a graph of N noop vertices without edges (mgmt only: the engine's
// own cost per vertex).
func Noops(n int) []byte {
	res := make([]yaml.Node, n)
	for i := range res {
		res[i] = mapping("name", fmt.Sprintf("n%d", i))
	}
	return marshalGraph(mgmtGraph{Graph: fmt.Sprintf("noop-%d", n), Resources: map[string][]yaml.Node{"noop": res}, Edges: []mgmtEdge{}})
}

// Export is host i's graph among n agents exchanging files (mgmt only): it
// exports one file, Dir/hI/out/xI, and collects every other host's into
// Dir/hI/in/, where it lands as Dir/hI/in/xJ.
type Export struct {
	Dir string
	N   int
}

// Out is the file host i exports.
func (x Export) Out(i int) string { return fmt.Sprintf("%s/h%d/out/x%d", x.Dir, i, i) }

// In is the directory host i collects into.
func (x Export) In(i int) string { return fmt.Sprintf("%s/h%d/in", x.Dir, i) }

// Collected lists the files host i holds once it has every other host's.
func (x Export) Collected(i int) []string {
	var out []string
	for j := 0; j < x.N; j++ {
		if j != i {
			out = append(out, path.Join(x.In(i), fmt.Sprintf("x%d", j)))
		}
	}
	return out
}

// Content is what host i exports.
func (x Export) Content(i int) string { return fmt.Sprintf("exported by host %d\n", i) }

// Mgmt is host i's graph.
func (x Export) Mgmt(i int) []byte {
	res := []yaml.Node{
		mapping("name", "in", "path", x.In(i)+"/"),
		mapping("name", fmt.Sprintf("@@x%d", i), "path", x.Out(i), "content", x.Content(i)),
	}
	return marshalGraph(mgmtGraph{
		Graph:     fmt.Sprintf("export-h%d", i),
		Resources: map[string][]yaml.Node{"file": res},
		Edges:     []mgmtEdge{},
		Collect:   []mgmtCollect{{Kind: "file", Pattern: x.In(i) + "/"}},
	})
}

// Service is an mgmt graph that keeps one systemd unit running (mgmt only:
// the drift scenario).
func Service(unit string) []byte {
	return marshalGraph(mgmtGraph{
		Graph:     "svc",
		Resources: map[string][]yaml.Node{"svc": {mapping("name", unit, "state", "running")}},
		Edges:     []mgmtEdge{},
	})
}
