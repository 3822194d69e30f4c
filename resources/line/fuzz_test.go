package line

import (
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// With -fuzz, the coordinator starts the os/signal goroutine after
// TestMain has taken its leak snapshot: start it first.
func init() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	signal.Stop(c)
}

// FuzzValidate: Validate never panics, refuses with a message, and what it
// accepts is usable: an absolute clean file path, one line without a
// newline, a compiled match when one is given; CheckApply's edit of any
// content is then idempotent (a second edit finds nothing to do).
func FuzzValidate(f *testing.F) {
	for _, s := range [][5]string{
		{"/etc/ssh/sshd_config", "PermitRootLogin no", "", "^#?PermitRootLogin", "x\n#PermitRootLogin yes\n"},
		{"/etc/x", "a", "absent", "", "a\na\n"},
		{"/etc/x", "", "absent", "^debug", "debug\n"},
		{"rel", "a\nb", "gone", "(", ""},
		{"/", "x", "", "", "x"},
		{"/a/../b//", "x\x00", "present", "[", "\n\n"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, path, line, state, match, content string) {
		r := &Line{Path: path, Line: line, State: state, Match: match}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		switch {
		case !filepath.IsAbs(r.path) || filepath.Clean(r.path) != r.path || r.path == "/":
			t.Fatalf("accepted path %q as %q", path, r.path)
		case strings.ContainsAny(line, "\n\x00"):
			t.Fatalf("accepted line %q", line)
		case (match != "") != (r.match != nil):
			t.Fatalf("match %q compiled as %v", match, r.match)
		}
		edited, change := r.edit([]byte(content))
		if change == nil {
			return
		}
		if again, c := r.edit(edited); c != nil {
			t.Fatalf("content %q edited to %q, then again to %q (%+v): not idempotent", content, edited, again, c)
		}
	})
}
