package file

import (
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mgmtconfig/mgmt/engine"
)

// With -fuzz, the fuzzing coordinator calls signal.Notify, which starts
// the os/signal goroutine for good, after TestMain has counted goroutines:
// its leak check would fail the run. Start that goroutine first (a signal
// whose default action is to be ignored, and only for an instant).
func init() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGWINCH)
	signal.Stop(c)
}

// FuzzValidate: Validate never panics, and what it accepts is usable: an
// absolute clean path, no content for a directory, a mode within 07777;
// one UID, the path's (and a second, its content's, when it manages all
// of it); no automatic edge to itself; and Collect either
// refuses with ErrCollect or returns a valid file placed directly in the
// pattern directory, with no source and no setuid or setgid bit.
func FuzzValidate(f *testing.F) {
	type seed struct {
		path, content         string
		hasContent            bool
		source, state, mode   string
		owner, group          string
		recurse, purge, force bool
	}
	for _, s := range []seed{
		{path: "/etc/motd", content: "hello\n", hasContent: true},
		{path: "/etc/app/", mode: "0750", owner: "root", group: "0"},
		{path: "/srv/www/", source: "/srv/src/", recurse: true, purge: true},
		{path: "/etc/motd", state: "absent", force: true},
		{path: "/etc/motd", source: "/etc/motd"},
		{path: "/tmp/x", mode: "4755", owner: "65534"},
		{path: "/", state: "absent"},
		{path: "/a/../b/./c//", mode: "2775"},
		{path: "rel/path", content: "x", hasContent: true, source: "/s"},
		{path: "/x", mode: "0968", owner: "no-such-user-mgmt", group: "4294967295"},
		{path: "/x\x00y", source: "z"},
		{path: "/.."},
		{path: "/.", source: "/srv/src/"},
		{path: "/etc/app/.", content: "x", hasContent: true},
		{path: "/d/", content: "", hasContent: true, purge: true},
	} {
		f.Add(s.path, s.content, s.hasContent, s.source, s.state, s.mode, s.owner, s.group, s.recurse, s.purge, s.force)
	}
	f.Fuzz(func(t *testing.T, path, content string, hasContent bool, source, state, mode, owner, group string, recurse, purge, force bool) {
		r := &File{Path: path, Source: source, State: state, Mode: mode, Owner: owner, GroupName: group, Recurse: recurse, Purge: purge, Force: force}
		if hasContent {
			r.Content = &content
		}
		if err := r.Validate(); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty message")
			}
			return
		}
		s := r.s
		switch {
		case !filepath.IsAbs(s.path) || filepath.Clean(s.path) != s.path || strings.ContainsRune(s.path, 0):
			t.Fatalf("accepted path %q as %q", path, s.path)
		case s.hasCont && s.dir:
			t.Fatalf("accepted content for the directory %q", path)
		case s.hasMode && s.mode > 0o7777:
			t.Fatalf("accepted mode %q as %o", mode, s.mode)
		case s.source != "" && (!filepath.IsAbs(s.source) || strings.ContainsRune(s.source, 0)):
			t.Fatalf("accepted source %q", source)
		case s.path == "/" && (s.absent || s.purge || s.force):
			t.Fatalf("accepted removing, purging or forcing /")
		}
		uids := r.UIDs()
		wholeContent := s.absent || !s.dir && (s.hasCont || r.Source != "")
		if len(uids) == 0 || uids[0] != (engine.UID{Kind: "file", Key: s.path}) ||
			wholeContent != (len(uids) == 2) || len(uids) == 2 && uids[1] != (engine.UID{Kind: ContentUID, Key: s.path}) {
			t.Fatalf("%q: UIDs %v", path, uids)
		}
		edges, err := r.AutoEdges(t.Context())
		if err != nil {
			t.Fatalf("%q: AutoEdges: %v", path, err)
		}
		for _, ae := range edges {
			for _, u := range ae.UIDs {
				if u == uids[0] {
					t.Fatalf("%q asks for an automatic edge to itself", path)
				}
			}
		}

		const pattern = "/srv/collected/"
		c, err := r.Collect(pattern)
		if err != nil {
			if !errors.Is(err, ErrCollect) {
				t.Fatalf("%q: Collect refused without ErrCollect: %v", path, err)
			}
			return
		}
		cf, ok := c.(*File)
		if !ok {
			t.Fatalf("Collect returned a %T", c)
		}
		if err := cf.Validate(); err != nil {
			t.Fatalf("%q collected as %q, which is invalid: %v", path, cf.Path, err)
		}
		switch {
		case filepath.Dir(cf.s.path) != filepath.Clean(pattern):
			t.Fatalf("%q collected as %q, outside %s", path, cf.Path, pattern)
		case cf.Source != "":
			t.Fatalf("%q collected with a source %q", path, cf.Source)
		case cf.s.hasMode && cf.s.mode&0o6000 != 0:
			t.Fatalf("%q collected with setuid or setgid mode %q", path, cf.Mode)
		case cf.s.dir != s.dir || cf.s.absent != s.absent || cf.s.hasCont != s.hasCont || string(cf.s.content) != string(s.content):
			t.Fatalf("%q collected as %+v: not the same file", path, cf)
		}
	})
}
