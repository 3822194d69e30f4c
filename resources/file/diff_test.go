package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
)

// lcs is the length of the longest common subsequence, by dynamic
// programming: the reference a shortest edit script is checked against.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	for i := range a {
		cur := make([]int, len(b)+1)
		for j := range b {
			if a[i] == b[j] {
				cur[j+1] = prev[j] + 1
			} else {
				cur[j+1] = max(prev[j+1], cur[j])
			}
		}
		prev = cur
	}
	return prev[len(b)]
}

func TestEditScriptIsShortestAndCorrect(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"a\n", "b\n", "c\n", "d\n"}
	for i := range 2000 {
		a := make([]string, rng.IntN(12))
		b := make([]string, rng.IntN(12))
		for j := range a {
			a[j] = words[rng.IntN(len(words))]
		}
		for j := range b {
			b[j] = words[rng.IntN(len(words))]
		}
		ops, ok := editScript(a, b, 1000)
		if !ok {
			t.Fatalf("case %d: no script", i)
		}
		var gotA, gotB []string
		edits := 0
		for _, o := range ops {
			if o.kind != '+' {
				gotA = append(gotA, o.line)
			}
			if o.kind != '-' {
				gotB = append(gotB, o.line)
			}
			if o.kind != ' ' {
				edits++
			}
		}
		if strings.Join(gotA, "") != strings.Join(a, "") || strings.Join(gotB, "") != strings.Join(b, "") {
			t.Fatalf("case %d: script of %q -> %q does not rebuild them: %v", i, a, b, ops)
		}
		if want := len(a) + len(b) - 2*lcs(a, b); edits != want {
			t.Fatalf("case %d: %d edits, the shortest has %d", i, edits, want)
		}
	}
}

func TestUnifiedDiff(t *testing.T) {
	old := "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n"
	new := "one\ntwo\nTHREE\nfour\nfive\nsix\nseven\neight\nnine\nten\neleven"
	got, why := unifiedDiff("/etc/x", []byte(old), []byte(new))
	want := `--- /etc/x
+++ /etc/x (wanted)
@@ -1,6 +1,6 @@
 one
 two
-three
+THREE
 four
 five
 six
@@ -8,3 +8,4 @@
 eight
 nine
 ten
+eleven
\ No newline at end of file
`
	if got != want || why != "" {
		t.Errorf("got (%q)\n%s\nwant\n%s", why, got, want)
	}
	if d, why := unifiedDiff("/x", []byte("a\x00b"), []byte("c")); d != "" || why != "binary" {
		t.Errorf("binary: %q %q", d, why)
	}
	var big strings.Builder
	for i := range 15000 {
		big.WriteString(strings.Repeat("x", 10) + string(rune('a'+i%26)) + "\n")
	}
	d, why := unifiedDiff("/x", nil, []byte(big.String()))
	if why != "" || len(d) > maxDiffOut+100 || !strings.HasSuffix(d, "... diff cut at 64 KiB\n") {
		t.Errorf("big diff: %d bytes, %q, ends %q", len(d), why, d[max(0, len(d)-40):])
	}
}

// recorder collects what a CheckApply reports.
type recorder struct {
	mu sync.Mutex // guards cs
	cs []engine.Change
}

func (r *recorder) Record(c engine.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cs = append(r.cs, c)
}

func checkRecorded(t *testing.T, r *File, apply bool) (bool, []engine.Change) {
	t.Helper()
	if r.s == nil {
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	changed, err := r.CheckApply(engine.WithRecorder(context.Background(), rec), apply)
	if err != nil {
		t.Fatal(err)
	}
	return changed, rec.cs
}

func props(cs []engine.Change) string {
	var p []string
	for _, c := range cs {
		p = append(p, c.Property)
	}
	return strings.Join(p, ",")
}

func TestFileReportsChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "motd")
	r := &File{Path: p, Content: ptr("hello\nworld\n"), Mode: "0640"}
	_, cs := checkRecorded(t, r, false)
	if props(cs) != "state,content" || cs[0].From != "absent" || cs[0].To != "file" || cs[1].Diff != "" ||
		!strings.Contains(cs[1].Why, "mode 0640, not world-readable") {
		t.Fatalf("missing file: %+v", cs)
	}
	r = &File{Path: p, Content: ptr("hello\nworld\n"), Mode: "0644"}
	if err := os.WriteFile(p, []byte("hello\nthere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, cs = checkRecorded(t, r, false)
	if props(cs) != "content,mode" || cs[0].Diff != "" || !strings.Contains(cs[0].Why, "mode 0600, is not world-readable") || cs[1].From != "0600" || cs[1].To != "0644" {
		t.Fatalf("private file: %+v", cs)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	_, cs = checkRecorded(t, r, false)
	if props(cs) != "content" || !strings.Contains(cs[0].Diff, "-there\n+world\n") || cs[0].From != "12 bytes, sha256 "+sum12("hello\nthere\n") {
		t.Fatalf("readable file: %+v", cs)
	}
	if changed, cs := checkRecorded(t, r, true); !changed || props(cs) != "content" {
		t.Fatalf("apply: %v %+v", changed, cs)
	}
	if changed, cs := checkRecorded(t, r, true); changed || len(cs) != 0 {
		t.Fatalf("second apply: %v %+v", changed, cs)
	}
	if err := os.WriteFile(p, []byte("\x00\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, cs := checkRecorded(t, r, false); props(cs) != "content" || cs[0].Why != "binary content differs" || cs[0].Diff != "" {
		t.Fatalf("binary: %+v", cs)
	}
	gone := &File{Path: p, State: StateAbsent}
	if _, cs := checkRecorded(t, gone, false); props(cs) != "state" || cs[0].From != "regular file" || cs[0].To != "absent" {
		t.Fatalf("absent: %+v", cs)
	}
}

func TestTreeReportsEntries(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"same": "s", "edit": "new", "add": "a"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"same": "s", "edit": "old", "extra": "x"} {
		if err := os.WriteFile(filepath.Join(dst, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &File{Path: dst + "/", Source: src, Recurse: true, Purge: true}
	_, cs := checkRecorded(t, r, false)
	got := map[string]string{}
	for _, c := range cs {
		got[filepath.Base(c.Property)] = c.Why
	}
	want := map[string]string{"add": "added", "edit": "changed: content", "extra": "purged: not in the source"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

func sum12(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}
