package pgraph

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/skip"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// dotFixture has the labels that need care: quotes, brackets, colons,
// backslashes, record syntax in group members, and a line break.
func dotFixture() *Graph {
	g := New(`web "prod"`)
	pkg := &tv{"pkg[nginx]"}
	file := &tv{`file[/etc/nginx/nginx.conf]`}
	svc := &tv{"svc[nginx.service]"}
	exec := &tv{`exec[echo "a\b" : c]`}
	grp := &tgroup{name: "pkg[group]", members: []string{"pkg[a b]", "pkg[{c}|<d>]", `pkg[e\f]`}}
	odd := &tv{"two\nlines"}
	g.AddEdge(pkg, file, &Edge{Name: "pkg[nginx] -> file[/etc/nginx/nginx.conf]"})
	g.AddEdge(file, svc, &Edge{Name: "file: conf", Notify: true})
	g.AddEdge(grp, svc, &Edge{})
	g.AddEdge(svc, exec, &Edge{Notify: true})
	g.AddEdge(exec, odd, &Edge{Name: `say "hi"`})
	return g
}

func TestWriteDOT(t *testing.T) {
	var buf bytes.Buffer
	if err := dotFixture().WriteDOT(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "graph.dot")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Errorf("WriteDOT:\n%s\nwant (%s):\n%s", buf.String(), golden, want)
	}
	var again bytes.Buffer
	if err := dotFixture().WriteDOT(&again); err != nil || again.String() != buf.String() {
		t.Errorf("WriteDOT is not deterministic (err %v)", err)
	}

	t.Run("graphviz accepts it", func(t *testing.T) {
		dot, err := exec.LookPath("dot")
		if err != nil {
			skip.OrFail(t, "graphviz dot is not installed (test/setup-deps.sh installs graphviz): %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, dot, "-Tsvg")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		svg, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("dot -Tsvg: %v\n%s", err, stderr.String())
		}
		// Every label must come out as written (the SVG escapes XML only).
		for _, text := range []string{
			"web &quot;prod&quot;", "pkg[nginx]", "file[/etc/nginx/nginx.conf]",
			`exec[echo &quot;a\b&quot; : c]`, "pkg[group]", "pkg[a b]", "pkg[{c}|&lt;d&gt;]", `pkg[e\f]`,
			"two", "lines", "file: conf (notify)", "say &quot;hi&quot;", ">(notify)<",
		} {
			if !strings.Contains(string(svg), text) {
				t.Errorf("the SVG lacks %q", text)
			}
		}
	})
}

func TestWriteDOTError(t *testing.T) {
	if err := dotFixture().WriteDOT(failWriter{}); err == nil {
		t.Error("WriteDOT hid the writer's error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }
