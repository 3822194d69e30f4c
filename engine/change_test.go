package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a buffer the engine's goroutines may write to at once.
type syncBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runRecorded runs g once to convergence with the log and Out in one
// buffer, and returns the output and the reports.
func runRecorded(t *testing.T, g *Graph, noop bool) (string, []Report) {
	t.Helper()
	var out syncBuf
	e := New(Config{Logger: slog.New(slog.NewTextHandler(&out, nil)), Out: &out, Noop: noop, ConvergedTimeout: 0})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Run(ctx, g); err != nil && ctx.Err() != nil {
		t.Fatalf("run did not end by itself: %v", err)
	}
	assertTally(t, e)
	return out.String(), e.Reports()
}

func reporting(cs ...Change) *fake {
	return &fake{check: func(ctx context.Context, apply bool) (bool, error) {
		Changed(ctx, cs...)
		return true, nil
	}}
}

func TestChangesLoggedAndReported(t *testing.T) {
	c := Change{Property: "content", From: "sha256:aaaa", To: "sha256:bbbb", Diff: "--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n", Why: "content differs"}
	for _, noop := range []bool{true, false} {
		out, reps := runRecorded(t, graphOf(t, []*Vertex{vtx("a", reporting(c))}), noop)
		msg := "msg=changed"
		if noop {
			msg = `msg="would change"`
		}
		line := msg + " res=fake[a] property=content from=sha256:aaaa to=sha256:bbbb why=\"content differs\""
		if !strings.Contains(out, line) {
			t.Errorf("noop=%v: no line %q in\n%s", noop, line, out)
		}
		if got := strings.Contains(out, "\n-old\n+new\n"); got != noop {
			t.Errorf("noop=%v: diff printed as a block: %v, want %v:\n%s", noop, got, noop, out)
		}
		r := reps[0]
		if len(r.Properties) != 1 || r.Properties[0] != c || r.Noop != noop || r.Pending != noop || r.Changed == noop {
			t.Errorf("noop=%v: report %+v", noop, r)
		}
	}
}

func TestSensitiveVertexMasksEverything(t *testing.T) {
	const secret = "hunter2-planted-secret"
	boom := errors.New("cannot write " + secret)
	failing := false
	f := &fake{check: func(ctx context.Context, apply bool) (bool, error) {
		Changed(ctx, Change{Property: "content", From: "old " + secret, To: secret, Diff: "-" + secret + "\n", Why: "because " + secret})
		if failing {
			return false, boom
		}
		return true, nil
	}}
	in := initFake{fake: f, init: func(env Env) error {
		env.Logger.Info("kind's own line", "line", secret, "path", "/etc/x")
		return nil
	}}
	for _, fail := range []bool{false, true} {
		failing = fail
		v := vtx("s", in)
		v.Meta.Sensitive = true
		v.Meta.Retry = 0
		out, reps := runRecorded(t, graphOf(t, []*Vertex{v}), true)
		data, err := json.Marshal(reps)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range map[string]string{"output": out, "report": string(data)} {
			if strings.Contains(s, secret) {
				t.Errorf("fail=%v: the secret is in the %s:\n%s", fail, what, s)
			}
		}
		if !strings.Contains(out, "path=/etc/x") {
			t.Errorf("the kind's line lost its plain attributes:\n%s", out)
		}
		if fail {
			if !reps[0].Failed || !strings.Contains(reps[0].Error, "error withheld: the resource is sensitive") {
				t.Errorf("error not withheld: %q", reps[0].Error)
			}
			continue
		}
		want := Change{Property: "content", From: ShortHash("old " + secret), To: ShortHash(secret), Why: "changed", Sensitive: true}
		if len(reps[0].Properties) != 1 || reps[0].Properties[0] != want {
			t.Errorf("report %+v, want %+v", reps[0].Properties, want)
		}
		if !strings.Contains(out, "property=content from="+want.From+" to="+want.To+" why=changed") {
			t.Errorf("no masked change line in\n%s", out)
		}
	}
}

func TestSensitiveChangeMasksOneProperty(t *testing.T) {
	f := reporting(Change{Property: "password", From: "$6$old", To: "$6$new", Sensitive: true}, Change{Property: "shell", From: "/bin/sh", To: "/bin/bash"})
	out, reps := runRecorded(t, graphOf(t, []*Vertex{vtx("u", f)}), true)
	if strings.Contains(out, "$6$") || !strings.Contains(out, "from=/bin/sh to=/bin/bash") {
		t.Errorf("output:\n%s", out)
	}
	if p := reps[0].Properties; len(p) != 2 || p[0].From != ShortHash("$6$old") || p[1].To != "/bin/bash" {
		t.Errorf("report %+v", p)
	}
}

// A kind that hashes a secret itself (a user's password hash) has it shown
// as that hash, not as a hash of the hash; a missing value stays empty.
func TestSensitiveChangeKeepsKindsHash(t *testing.T) {
	kinds := ShortHash("$6$new")
	f := reporting(Change{Property: "password", To: kinds, Sensitive: true})
	out, reps := runRecorded(t, graphOf(t, []*Vertex{vtx("u", f)}), true)
	want := Change{Property: "password", To: kinds, Why: "changed", Sensitive: true}
	if p := reps[0].Properties; len(p) != 1 || p[0] != want {
		t.Errorf("report %+v, want %+v", p, want)
	}
	if !strings.Contains(out, "property=password to="+kinds+" why=changed") {
		t.Errorf("output:\n%s", out)
	}
	for _, s := range []string{"sha256:0123456789a", "sha256:0123456789abc", "sha256:0123456789aB", "SHA256:0123456789ab"} {
		if ShortHash(s) == s {
			t.Errorf("ShortHash(%q) kept it: not a short hash", s)
		}
	}
}

func TestChangesBounded(t *testing.T) {
	f := &fake{check: func(ctx context.Context, apply bool) (bool, error) {
		for range MaxChangesPerCheck + 50 {
			Changed(ctx, Change{Property: "file"})
		}
		return true, nil
	}}
	out, reps := runRecorded(t, graphOf(t, []*Vertex{vtx("t", f)}), true)
	if r := reps[0]; len(r.Properties) != MaxChangesPerCheck || r.NotListed != 50 {
		t.Errorf("%d listed, %d not, want %d and 50", len(r.Properties), r.NotListed, MaxChangesPerCheck)
	}
	if !strings.Contains(out, "50 more changes not shown") {
		t.Errorf("the left-out changes are not counted in the log")
	}
}

func TestNoopNotifyReportsWouldRefresh(t *testing.T) {
	p := reporting(Change{Property: "content"})
	c := refreshFake{&fake{refresh: func(context.Context) (bool, error) { t.Error("refreshed in noop"); return true, nil }}}
	d := &Decl{Name: "t", Vertices: []*Vertex{vtx("p", p), vtx("c", c)},
		Edges: []EdgeDecl{{From: Ref{"fake", "p"}, To: Ref{"fake", "c"}, Notify: true}}}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	out, reps := runRecorded(t, g, true)
	want := Change{Property: "refresh", Why: "notified by fake[p], which would change"}
	if r := reps[0]; r.Res != "fake[c]" || !r.Pending || len(r.Properties) != 1 || r.Properties[0] != want {
		t.Errorf("child's report %+v", r)
	}
	if !strings.Contains(out, `res=fake[c] property=refresh why="notified by fake[p], which would change"`) {
		t.Errorf("output:\n%s", out)
	}
}

func TestRefreshSaysWhy(t *testing.T) {
	p := reporting(Change{Property: "content"})
	c := refreshFake{&fake{refresh: func(ctx context.Context) (bool, error) {
		Changed(ctx, Change{Property: "state", From: "running", To: "restarted"})
		return true, nil
	}}}
	d := &Decl{Name: "t", Vertices: []*Vertex{vtx("p", p), vtx("c", c)},
		Edges: []EdgeDecl{{From: Ref{"fake", "p"}, To: Ref{"fake", "c"}, Notify: true}}}
	g, err := Compile(context.Background(), d, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	_, reps := runRecorded(t, g, false)
	want := Change{Property: "state", From: "running", To: "restarted", Why: "refreshed by fake[p]"}
	if r := reps[0]; r.Res != "fake[c]" || len(r.Properties) != 1 || r.Properties[0] != want {
		t.Errorf("child's report %+v, want %+v", r.Properties, want)
	}
}

type initFake struct {
	*fake
	init func(Env) error
}

func (f initFake) Init(env Env) error { return f.init(env) }
