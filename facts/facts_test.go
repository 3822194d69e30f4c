package facts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/template"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// fixed replaces what a fixture root cannot decide (the test machine's
// architecture and CPUs), after checking it, so the golden file is the same
// everywhere.
func fixed(t *testing.T, f *Facts) {
	t.Helper()
	if f.Arch != runtime.GOARCH || f.CPUs != runtime.NumCPU() {
		t.Errorf("arch, cpus = %s, %d; want %s, %d", f.Arch, f.CPUs, runtime.GOARCH, runtime.NumCPU())
	}
	f.Arch, f.CPUs = "amd64", 4
}

func TestGatherFixture(t *testing.T) {
	for _, tc := range []struct {
		root string
		opt  Options
	}{
		{"debian", Options{Labels: map[string]string{"role": "web", "zone": "eu-1"}, Version: "1.2.3"}},
		{"minimal", Options{Hostname: "db1.example.org"}},
	} {
		t.Run(tc.root, func(t *testing.T) {
			tc.opt.Root = filepath.Join("testdata", tc.root)
			f, err := Gather(context.Background(), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			fixed(t, f)
			got, err := json.MarshalIndent(f, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.root+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("facts of %s:\n%s\nwant (%s):\n%s", tc.root, got, golden, want)
			}
		})
	}
}

func TestGatherFixtureErrors(t *testing.T) {
	for _, tc := range []struct {
		remove, want string
	}{
		{"proc/meminfo", "memory: open "},
		{"proc/sys/kernel/arch", "machine: open "},
		{"proc/sys/kernel/osrelease", "kernel release: open "},
		{"proc/sys/kernel/hostname", "hostname: open "},
	} {
		root := t.TempDir()
		if err := os.CopyFS(root, os.DirFS("testdata/minimal")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(root, tc.remove)); err != nil {
			t.Fatal(err)
		}
		// Under a fixture root a missing file is an error: the running
		// kernel is not asked instead.
		_, err := Gather(context.Background(), Options{Root: root})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("without %s: err = %v; want %q...", tc.remove, err, tc.want)
		}
	}
	var le *LabelError
	if _, err := Gather(context.Background(), Options{Root: "testdata/minimal", Labels: map[string]string{"ok": "1", "bad key": "x"}}); !errors.As(err, &le) {
		t.Errorf("a bad label: err = %v; want a *LabelError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Gather(ctx, Options{Root: "testdata/minimal"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

// TestGatherThisMachine: the real machine's facts agree with what Go's
// runtime and os packages say.
func TestGatherThisMachine(t *testing.T) {
	f, err := Gather(context.Background(), Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if f.Hostname != host {
		t.Errorf("hostname %q; os.Hostname %q", f.Hostname, host)
	}
	if f.CPUs != runtime.NumCPU() {
		t.Errorf("cpus %d; runtime.NumCPU %d", f.CPUs, runtime.NumCPU())
	}
	if f.MemoryBytes == 0 {
		t.Error("memory_bytes 0")
	}
	if f.Kernel == "" || f.Machine == "" || f.OS.ID == "" || f.FQDN == "" {
		t.Errorf("kernel %q, machine %q, os.id %q, fqdn %q: want all set", f.Kernel, f.Machine, f.OS.ID, f.FQDN)
	}
	if !slices.IsSortedFunc(f.Addresses, compareAddress) {
		t.Errorf("addresses not sorted: %v", f.Addresses)
	}
	for _, a := range f.Addresses {
		if a.Prefix.Addr().IsLoopback() || a.Prefix.Addr().IsLinkLocalUnicast() {
			t.Errorf("address %v of %s kept", a.Prefix, a.Interface)
		}
	}
	t.Logf("%s %s %s %s %d cpus %d bytes %d addresses", f.Hostname, f.FQDN, f.OS.PrettyName, f.Kernel, f.CPUs, f.MemoryBytes, len(f.Addresses))
}

func TestParseOSRelease(t *testing.T) {
	got := parseOSRelease(`# comment
A=plain
B="double \"quoted\" \$HOME \\ \n"
C='single $x "y"'
D=
E="unterminated
F=two words
 G = spaced
H="trailing"junk
I=last
I=wins
`)
	want := map[string]string{
		"A": "plain",
		"B": `double "quoted" $HOME \ \n`,
		"C": `single $x "y"`,
		"D": "",
		"I": "wins",
	}
	if !mapsEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestOSReleaseNone(t *testing.T) {
	o, err := readOSRelease(t.TempDir())
	if err != nil || o != (OS{ID: "linux"}) {
		t.Errorf("no os-release: %+v, %v; want ID linux only", o, err)
	}
}

func TestFQDN(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/hosts"), []byte(`
127.0.0.1 localhost.localdomain localhost web1
# 10.0.0.2 db1.example.com db1
10.0.0.3 db2 db2.example.com
10.0.0.4 lb1.example.com lb1
10.0.0.5 lb1.other.example
`), 0o644)
	for host, want := range map[string]string{
		"web1":            "web1", // its line's first name is not web1.<domain>
		"db1":             "db1",  // commented out
		"db2":             "db2",  // the first name is the canonical one
		"lb1":             "lb1.example.com",
		"x.example.net":   "x.example.net",
		"lb1.example.com": "lb1.example.com",
		"nothere":         "nothere",
	} {
		got, err := fqdn(dir, host)
		if err != nil || got != want {
			t.Errorf("fqdn(%q) = %q, %v; want %q", host, got, err, want)
		}
	}
	if got, err := fqdn(t.TempDir(), "web1"); err != nil || got != "web1" {
		t.Errorf("no hosts file: %q, %v", got, err)
	}
}

func TestMemTotal(t *testing.T) {
	dir := t.TempDir()
	for text, want := range map[string]string{
		"MemFree: 1 kB\n":                  "no MemTotal line",
		"MemTotal: 12 MB\n":                "bad MemTotal line",
		"MemTotal: x kB\n":                 "bad MemTotal line",
		"MemTotal: 99999999999999999 kB\n": "bad MemTotal line", // overflows uint64 in bytes
		"MemTotal:   16 kB\n":              "",
	} {
		p := filepath.Join(dir, "meminfo")
		os.WriteFile(p, []byte(text), 0o644)
		n, err := memTotal(p)
		switch {
		case want == "" && (err != nil || n != 16*1024):
			t.Errorf("%q: %d, %v; want 16384", text, n, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err %v; want %q", text, err, want)
		}
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestAddresses(t *testing.T) {
	got := addresses([]iface{
		{name: "lo", up: true, loopback: true, addrs: []netip.Prefix{pfx("127.0.0.1/8"), pfx("::1/128")}},
		{name: "eth1", up: true, addrs: []netip.Prefix{pfx("fd00::9/64"), pfx("10.0.0.9/24"), pfx("fe80::1/64"), pfx("10.0.0.2/24")}},
		{name: "eth0", up: true, addrs: []netip.Prefix{pfx("192.0.2.5/24"), pfx("169.254.1.1/16"), pfx("2001:db8::5/64"), pfx("192.0.2.5/24")}},
		{name: "down0", addrs: []netip.Prefix{pfx("198.51.100.1/24")}},
		{name: "br0", up: true, addrs: []netip.Prefix{pfx("10.0.0.2/24")}},
	})
	var s []string
	for _, a := range got {
		s = append(s, a.Interface+" "+a.Prefix.String())
	}
	want := []string{
		"br0 10.0.0.2/24",
		"eth0 192.0.2.5/24",
		"eth0 2001:db8::5/64",
		"eth1 10.0.0.2/24",
		"eth1 10.0.0.9/24",
		"eth1 fd00::9/64",
	}
	if !slices.Equal(s, want) {
		t.Fatalf("addresses:\n%s\nwant\n%s", strings.Join(s, "\n"), strings.Join(want, "\n"))
	}
	m := Facts{Addresses: got}.Map()
	b, _ := json.Marshal(map[string]any{"addresses": m["addresses"], "interfaces": m["interfaces"]})
	const wantJSON = `{"addresses":{"ipv4":["10.0.0.2","10.0.0.9","192.0.2.5"],"ipv6":["2001:db8::5","fd00::9"]},` +
		`"interfaces":{"br0":{"ipv4":["10.0.0.2"],"ipv6":[]},"eth0":{"ipv4":["192.0.2.5"],"ipv6":["2001:db8::5"]},"eth1":{"ipv4":["10.0.0.2","10.0.0.9"],"ipv6":["fd00::9"]}}}`
	if string(b) != wantJSON {
		t.Errorf("map:\n%s\nwant\n%s", b, wantJSON)
	}
}

// TestTemplateData: the names the docs promise work in text/template, with
// missing keys an error, and numbers print as integers.
func TestTemplateData(t *testing.T) {
	f, err := Gather(context.Background(), Options{Root: "testdata/debian", Labels: map[string]string{"role": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	f.Addresses = addresses([]iface{{name: "eth0", up: true, addrs: []netip.Prefix{pfx("192.0.2.5/24")}}})
	const text = `{{ .Hostname }} {{ .FQDN }} {{ .Labels.role }} {{ .Facts.os.id }} {{ .Facts.os.version_id }} ` +
		`{{ .Facts.memory_bytes }} {{ index .Facts.addresses.ipv4 0 }} {{ index .Facts.interfaces.eth0.ipv4 0 }} ` +
		`{{ .Facts.labels.role }} {{ if gt .Facts.memory_bytes 4000000000 }}big{{ end }} {{ if ge .Facts.cpus 1 }}cpus{{ end }}`
	tmpl := template.Must(template.New("t").Option("missingkey=error").Parse(text))
	var out strings.Builder
	if err := tmpl.Execute(&out, f.Data()); err != nil {
		t.Fatal(err)
	}
	const want = "web1 web1.example.com web debian 12 8234594304 192.0.2.5 192.0.2.5 web big cpus"
	if got := out.String(); got != want {
		t.Errorf("rendered %q", got)
	}
	for _, missing := range []string{`{{ .Facts.os.nope }}`, `{{ .Labels.nope }}`, `{{ .Facts.nope }}`} {
		tm := template.Must(template.New("t").Option("missingkey=error").Parse(missing))
		if err := tm.Execute(&strings.Builder{}, f.Data()); err == nil {
			t.Errorf("%s: no error", missing)
		}
	}
	// Data is a copy: a template cannot change the facts.
	d := f.Data()
	d.Labels["role"] = "db"
	d.Facts["os"].(map[string]any)["id"] = "x"
	if f.Labels["role"] != "web" || f.OS.ID != "debian" {
		t.Error("Data shares maps with Facts")
	}
}

// TestDocsNameEveryFact: docs/fleet.md lists every fact name Map has.
func TestDocsNameEveryFact(t *testing.T) {
	doc, err := os.ReadFile("../docs/fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	f := Facts{Labels: map[string]string{}}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			name := prefix + k
			if name == "interfaces" || name == "labels" {
				continue // keyed by interface and label: named below
			}
			if sub, ok := v.(map[string]any); ok {
				walk(name+".", sub)
				continue
			}
			if !bytes.Contains(doc, []byte("`"+name+"`")) {
				t.Errorf("docs/fleet.md does not name the fact `%s`", name)
			}
		}
	}
	walk("", f.Map())
	for _, name := range []string{"interfaces.NAME.ipv4", "interfaces.NAME.ipv6", "labels.KEY"} {
		if !bytes.Contains(doc, []byte("`"+name+"`")) {
			t.Errorf("docs/fleet.md does not name the fact `%s`", name)
		}
	}
}
