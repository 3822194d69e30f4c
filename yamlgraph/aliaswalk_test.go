package yamlgraph

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/facts"
)

// aliasTower is a resource list whose item's parameter x39 is 4^39 copies
// of x0 through aliases: small to write, endless to walk alias by alias.
func aliasTower(first string) string {
	return aliasTowerUse(first, "")
}

// aliasTowerUse is aliasTower with use (lines of the item) after x39.
func aliasTowerUse(first, use string) string {
	var b strings.Builder
	b.WriteString("graph: tower\nresources:\n  noop:\n  - name: a\n")
	fmt.Fprintf(&b, "    x0: &a0 [%s, b]\n", first)
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "    x%d: &a%d [*a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	b.WriteString(use)
	b.WriteString("edges: []\n")
	return b.String()
}

// within runs f and fails the test if it has not returned after d: the
// walks below take microseconds, or (following every alias) longer than
// the universe has.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still running after %v: a walk follows every alias", what, d)
	}
}

// A tower of aliases is walked once per node, never once per path to it:
// in the renderer (a template under the anchor, for a host and for the
// probe), in the checks of a plain graph, and in collected parameters.
func TestAliasTowerWalkedOnce(t *testing.T) {
	host := &facts.Data{Hostname: "h"}
	for _, tc := range []struct {
		name  string
		first string
		use   string
		opt   Options
	}{
		{"template, for a host", `"{{ .Hostname }}"`, "", Options{Host: host}},
		{"template, probe", `"{{ .Hostname }}"`, "", Options{}},
		{"no template", `lol`, "", Options{Host: host}},
		{"in a field, template", `"{{ .Hostname }}"`, "    meta:\n      sema: *a39\n", Options{Host: host}},
		{"in a field", `lol`, "    meta:\n      sema: *a39\n", Options{Host: host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			within(t, 20*time.Second, "parsing the tower", func() {
				_, _ = ParseWith("tower.yaml", []byte(aliasTowerUse(tc.first, tc.use)), tc.opt)
			})
		})
	}
	t.Run("collected", func(t *testing.T) {
		params := strings.SplitN(aliasTower("lol"), "  - name: a\n", 2)[1]
		params = strings.TrimSuffix(params, "edges: []\n")
		within(t, 20*time.Second, "decoding the tower", func() {
			_, _ = DecodeRes("etcd:evil", "noop", "x", []byte(params))
		})
	})
}
