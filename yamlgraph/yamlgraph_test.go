package yamlgraph

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/quote"
	_ "github.com/mgmtconfig/mgmt/resources/exec"
	_ "github.com/mgmtconfig/mgmt/resources/file"
	_ "github.com/mgmtconfig/mgmt/resources/noop"
	_ "github.com/mgmtconfig/mgmt/resources/timer"
)

var update = flag.Bool("update", false, "rewrite the golden .err files")

// lineCol is what follows the file name at the start of every message.
var lineCol = regexp.MustCompile(`^:[1-9][0-9]*:[1-9][0-9]*: `)

// Every file in testdata/bad is refused with the message in its .err file,
// which names the file, line and column and, where there is one, the
// resource.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 45 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g, err := ParseFile(f)
			if g != nil && err != nil {
				t.Fatal("an invalid file returned a graph")
			}
			if err == nil { // valid as a file: the graph itself must be refused
				_, err = engine.Compile(context.Background(), &g.Decl, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}
			if err == nil {
				t.Fatalf("accepted: %d vertices", len(g.Vertices))
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".err"
			got := err.Error() + "\n"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("no golden file (run go test -update): %v", rerr)
			}
			if got != string(want) {
				t.Fatalf("error\n got: %s\nwant: %s", got, want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
				if !strings.HasPrefix(line, f+":") || !lineCol.MatchString(strings.TrimPrefix(line, f)) {
					t.Fatalf("a message does not begin with file:line:column: %s", line)
				}
				// Text from the file is quoted: no message prints a
				// character that hides or reorders what surrounds it.
				if i, r := quote.Find(line); i >= 0 {
					t.Fatalf("a message holds %U raw at offset %d: %s", r, i, quote.String(line))
				}
			}
		})
	}
}

func TestLegacyFile(t *testing.T) {
	g, err := ParseFile("testdata/good/legacy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "legacy" || len(g.Vertices) != 2 || len(g.Edges) != 1 {
		t.Fatalf("parsed %q with %d vertices and %d edges", g.Name, len(g.Vertices), len(g.Edges))
	}
	var e1 = g.Vertices[1]
	if e1.Kind != "exec" || e1.Name != "e1" || !e1.Exported {
		t.Fatalf("exported exec parsed as %s exported=%t", e1, e1.Exported)
	}
	if n1 := g.Vertices[0]; n1.Meta.AutoGroup || !n1.Meta.AutoEdge {
		t.Fatalf("meta not decoded: %+v", n1.Meta)
	}
	e := g.Edges[0]
	if e.From.Kind != "noop" || e.To.Name != "e1" || !e.Notify {
		t.Fatalf("edge parsed as %+v", e)
	}
}

func TestParamsRoundTrip(t *testing.T) {
	g, err := Parse("x.yaml", []byte("resources: {exec: [{name: a, cmd: echo one, timeout: 5}]}"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Params(g.Vertices[0].Res)
	if err != nil {
		t.Fatal(err)
	}
	res, err := DecodeRes("etcd:host1", "exec", "a", p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Params(res)
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != string(p2) {
		t.Fatalf("parameters changed in transit:\n%s\nvs\n%s", p, p2)
	}
	if _, err := DecodeRes("etcd:host1", "exec", "a", []byte("cmd: x\nbogus: 1\n")); err == nil || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Fatalf("strict decoding of collected parameters: %v", err)
	}
}

// Parameters from another host are held to what a file is: one document
// (yaml.Unmarshal read the first of several and dropped the rest), no
// tags, and a name a graph would accept. A refusal names the host and
// the resource.
func TestDecodeResRefuses(t *testing.T) {
	for _, tc := range []struct {
		what, name, params, want string
	}{
		{"second YAML document", "a", "cmd: echo a\n---\ncmd: rm -rf /tmp/x\n", "etcd:h1:2:1: exec[a]: a second YAML document starts here"},
		{"second JSON document", "a", `{"cmd": "echo a"}{"cmd": "rm -rf /tmp/x"}`, "etcd:h1:1:"},
		{"JSON documents on two lines", "a", "{\"cmd\": \"echo a\"}\n{\"cmd\": \"rm\"}\n", "etcd:h1:2:"},
		{"after an end marker", "a", "cmd: echo a\n...\ncmd: rm\n", "etcd:h1:3:"},
		{"binary tag", "a", "cmd: echo a\ncwd: !!binary L2V0Yw==\n", `etcd:h1:2:6: exec[a]: explicit YAML tag "!!binary"`},
		{"valid", "a", "cmd: echo a\n", ""}, // the control
		{"bidi name", "a\u202eb", "cmd: echo a\n", `etcd:h1: exec[a\u202eb]: the name "a\u202eb" holds U+202E`},
		{"long name", strings.Repeat("n", MaxName+1), "cmd: echo a\n", "the name is 4097 bytes long"},
		{"bad UTF-8 name", "a\xffb", "cmd: echo a\n", `the name "a\xffb" holds a byte that is not UTF-8`},
	} {
		_, err := DecodeRes("etcd:h1", "exec", tc.name, []byte(tc.params))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.what, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error with %q", tc.what, err, tc.want)
		}
	}
	// One document, with or without an empty second one, is used whole.
	for _, params := range []string{"cmd: echo a\n", "cmd: echo a\n---\n", "---\ncmd: echo a\n"} {
		res, err := DecodeRes("etcd:h1", "exec", "a", []byte(params))
		if err != nil {
			t.Fatalf("%q: %v", params, err)
		}
		if p, _ := Params(res); !strings.Contains(string(p), "cmd: echo a") {
			t.Fatalf("%q decoded as %s", params, p)
		}
	}
}
