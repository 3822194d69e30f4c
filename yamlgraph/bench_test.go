package yamlgraph

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// A graph of n file resources, each with meta, and n/2 edges.
func bigGraph(n int) []byte {
	var b bytes.Buffer
	b.WriteString("resources:\n  file:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: f%d\n    path: /tmp/x/d%d/f%d\n    content: \"hello %d\\n\"\n    meta: {retry: 2}\n", i, i%100, i, i)
	}
	b.WriteString("edges:\n")
	for i := 0; i+1 < n; i += 2 {
		fmt.Fprintf(&b, "- {name: e%d, from: {kind: file, name: f%d}, to: {kind: file, name: f%d}}\n", i, i, i+1)
	}
	return b.Bytes()
}

// BenchmarkParse10k parses a valid graph of 10,000 resources.
func BenchmarkParse10k(b *testing.B) {
	data := bigGraph(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("x.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocate is the worst case of locating a syntax error: a file of
// locateLimit bytes with a bad indentation on its last line.
func BenchmarkLocate(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("resources:\n  noop:\n")
	for i := 0; buf.Len() < locateLimit-100; i++ {
		fmt.Fprintf(&buf, "  - name: n%d\n    comment: some text\n", i)
	}
	buf.WriteString("   - name: bad\n")
	data := buf.Bytes()
	for b.Loop() {
		_, err := Parse("x.yaml", data)
		var es Errors
		if !errors.As(err, &es) || es[0].Column != 4 {
			b.Fatalf("not located: %v", err)
		}
	}
}
