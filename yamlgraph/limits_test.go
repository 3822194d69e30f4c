package yamlgraph

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/engine"
	"github.com/mgmtconfig/mgmt/resources/noop"
)

// parseOnly parses data and returns its errors, failing the test if the
// input was accepted or refused with anything but Errors.
func parseOnly(t *testing.T, name string, data []byte) Errors {
	t.Helper()
	g, err := Parse(name, data)
	if g != nil || err == nil {
		t.Fatalf("%s accepted", name)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("%s: want Errors, got %T: %v", name, err, err)
	}
	for _, e := range es {
		if e.File != name || e.Line < 1 || e.Column < 1 {
			t.Fatalf("%s: a message without file:line:column: %v", name, e)
		}
	}
	return es
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A file over MaxFileSize is refused by size, whether read by ParseFile
// (which looks at the size before reading) or handed to Parse (as the agent
// does with the file it watches).
func TestHugeFileRefused(t *testing.T) {
	// A valid graph but for its size: one noop with a long comment.
	var b bytes.Buffer
	b.WriteString("resources:\n  noop:\n  - name: a\n    comment: |\n")
	line := "      " + strings.Repeat("x", 120) + "\n"
	b.Write(bytes.Repeat([]byte(line), MaxFileSize/len(line)+1))
	// On disk, the same header and a hole up to the size: no 32 MiB write.
	path := filepath.Join(t.TempDir(), "huge.yaml")
	if err := os.WriteFile(path, b.Bytes()[:4096], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(b.Len())); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parse func() (*Graph, error)
	}{
		{"ParseFile", func() (*Graph, error) { return ParseFile(path) }},
		{"Parse", func() (*Graph, error) { return Parse(path, b.Bytes()) }},
	} {
		g, err := tc.parse()
		var es Errors
		if g != nil || !errors.As(err, &es) || len(es) != 1 {
			t.Fatalf("%s: a %d-byte file: want one error, got %v", tc.name, b.Len(), err)
		}
		want := fmt.Sprintf("%s:1:1: file is larger than 32 MiB (%d bytes)", path, b.Len())
		if !strings.HasPrefix(es[0].Error(), want) {
			t.Fatalf("%s: got %q, want it to begin with %q", tc.name, es[0].Error(), want)
		}
	}
	// At the limit, the text is not refused (and goes on to the parser).
	if e := checkText(path, b.Bytes()[:MaxFileSize]); e != nil {
		t.Fatalf("a file of exactly MaxFileSize bytes: %v", e)
	}
}

// nested returns a graph whose one comment is a value nested depth levels
// deep, in flow ([[[...]]]) or block (- - - x) style.
func nested(depth int, flow bool) []byte {
	var b bytes.Buffer
	b.WriteString("resources:\n  noop:\n  - name: a\n    comment:")
	if flow {
		b.WriteByte(' ')
		b.WriteString(strings.Repeat("[", depth))
		b.WriteString(strings.Repeat("]", depth))
		b.WriteByte('\n')
		return b.Bytes()
	}
	b.WriteString("\n    ")
	b.WriteString(strings.Repeat("- ", depth))
	b.WriteString("x\n")
	return b.Bytes()
}

// Values nested 10,000 levels deep (and beyond the YAML library's limit)
// are refused with a position, without exhausting the stack.
func TestDeepNestingRefused(t *testing.T) {
	for _, tc := range []struct {
		depth int
		flow  bool
		want  string
	}{
		{10000, true, "comment"},             // at the library's limit: parsed, then refused as not a string
		{10001, true, "exceeded max depth"},  // beyond it
		{100000, true, "exceeded max depth"}, //
		{9990, false, "comment"},             // block style, inside the graph's own levels
		{10000, false, "exceeded max depth"}, //
	} {
		name := fmt.Sprintf("nested-%d-flow-%t.yaml", tc.depth, tc.flow)
		start := time.Now()
		es := parseOnly(t, name, nested(tc.depth, tc.flow))
		t.Logf("%s: %v", name, time.Since(start))
		if !strings.Contains(es.Error(), tc.want) {
			t.Errorf("%s: got %v, want a message about %q", name, es, tc.want)
		}
	}
}

// The "billion laughs" file is refused without expanding its aliases:
// expanded, it would hold 9^8 strings and allocate gigabytes.
func TestAliasBombNotExpanded(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/alias-bomb.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := allocated(func() { parseOnly(t, "bomb.yaml", data) })
	t.Logf("parsing the alias bomb allocated %d KiB", n>>10)
	if n > 16<<20 {
		t.Fatalf("parsing the alias bomb allocated %d MiB: the aliases were expanded", n>>20)
	}
	// The same, in parameters collected from another host.
	params := strings.Replace(string(data), "graph: bomb\n", "", 1)
	n = allocated(func() {
		if _, err := DecodeRes("etcd:evil", "exec", "x", []byte(params)); err == nil {
			t.Fatal("collected parameters holding an alias bomb were accepted")
		}
	})
	if n > 16<<20 {
		t.Fatalf("decoding collected parameters holding an alias bomb allocated %d MiB", n>>20)
	}
}

// A file with thousands of problems reports the first hundred and counts
// the rest.
func TestTooManyProblems(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("resources:\n  noop:\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "  - name: n%d\n    colour: red\n", i)
	}
	es := parseOnly(t, "many.yaml", b.Bytes())
	if len(es) != maxErrors+1 {
		t.Fatalf("%d messages, want %d and a count of the rest", len(es), maxErrors+1)
	}
	if last := es[len(es)-1]; !strings.Contains(last.Msg, "400 more problems") || last.Line != 4+2*maxErrors {
		t.Fatalf("last message: %v", last)
	}
}

// Aliases are followed where a graph allows a value: a shared meta block
// works, and the hash of a resource does not depend on how it was written.
func TestAliasesFollowed(t *testing.T) {
	g, err := Parse("x.yaml", []byte(`resources:
  exec:
  - name: a
    cmd: echo a
    meta: &m {retry: 2, delay: 10}
  - name: b
    cmd: echo b
    meta: *m
`))
	if err != nil {
		t.Fatal(err)
	}
	if m := g.Vertices[1].Meta; m.Retry != 2 || m.Delay != 10 {
		t.Fatalf("meta through an alias: %+v", m)
	}
}

// Collected resources enter through NewVertex: a name that could forge log
// lines is refused there too.
func TestNewVertexRefusesControlCharacters(t *testing.T) {
	for _, name := range []string{"", "a\nb", "a\x1b[31m"} {
		if _, err := NewVertex("noop", name, false, engine.DefaultMeta(), &noop.Noop{}); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := NewVertex("noop", "fine name/é", false, engine.DefaultMeta(), &noop.Noop{}); err != nil {
		t.Fatal(err)
	}
}
