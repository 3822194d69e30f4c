package desired

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/agent"
	"github.com/mgmtconfig/mgmt/engine"
	_ "github.com/mgmtconfig/mgmt/resources/all"
	"github.com/mgmtconfig/mgmt/test/skip"
)

// TestMgmtGraphsCompile: every graph the benchmarks write is one mgmt
// accepts, as `mgmt validate` would, for the kinds this build has.
func TestMgmtGraphsCompile(t *testing.T) {
	dir := t.TempDir()
	graphs := map[string][]byte{
		"files":   Files{Root: filepath.Join(dir, "tree"), N: 250}.Mgmt(),
		"execs":   Execs{Sleep: "2"}.Mgmt(),
		"noops":   Noops(10),
		"export":  Export{Dir: dir, N: 3}.Mgmt(1),
		"pkgs":    Packages{Names: []string{"a", "b"}, AllowUnsupported: true}.Mgmt(),
		"ungroup": Packages{Names: []string{"a", "b"}, Ungrouped: true}.Mgmt(),
		"svc":     Service("bench.service"),
	}
	kinds := map[string]string{"pkgs": "pkg", "ungroup": "pkg", "svc": "svc"}
	for name, g := range graphs {
		t.Run(name, func(t *testing.T) {
			if k, ok := kinds[name]; ok {
				if _, ok := engine.NewRes(k); !ok {
					t.Fatalf("kind %s is not registered: resources/all should have imported it", k)
				}
			}
			f := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(f, g, 0o644); err != nil {
				t.Fatal(err)
			}
			_, pg, err := agent.Load(context.Background(), f, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatalf("%v\n%s", err, g)
			}
			if pg.NumVertices() == 0 {
				t.Errorf("no vertices:\n%s", g)
			}
		})
	}
}

func TestFilesLayout(t *testing.T) {
	f := Files{Root: "/r", N: 250}
	if got, want := f.Dirs(), []string{"/r", "/r/d000", "/r/d001", "/r/d002"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Dirs() = %v, want %v", got, want)
	}
	if got := f.Path(249); got != "/r/d002/f00249" {
		t.Errorf("Path(249) = %s", got)
	}
	if !strings.HasSuffix(f.Content(1), "\n") || f.Content(1) == f.Content(2) {
		t.Errorf("contents: %q, %q", f.Content(1), f.Content(2))
	}
}

func TestQuoting(t *testing.T) {
	tests := []struct{ in, puppet, cf, sh string }{
		{"plain", `"plain"`, `"plain"`, `'plain'`},
		{"a \"q\" $x\n", `"a \"q\" \$x\n"`, "\"a \\\"q\\\" $x\n\"", "'a \"q\" $x\n'"},
		{`back\slash it's`, `"back\\slash it's"`, `"back\\slash it's"`, `'back\slash it'\''s'`},
	}
	for _, tt := range tests {
		if got := puppetString(tt.in); got != tt.puppet {
			t.Errorf("puppetString(%q) = %s, want %s", tt.in, got, tt.puppet)
		}
		if got := cfString(tt.in); got != tt.cf {
			t.Errorf("cfString(%q) = %s, want %s", tt.in, got, tt.cf)
		}
		if got := shQuote(tt.in); got != tt.sh {
			t.Errorf("shQuote(%q) = %s, want %s", tt.in, got, tt.sh)
		}
	}
}

func TestCFStringRefusesExpansion(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("cfString of a $(var) did not panic")
		}
	}()
	cfString("$(sys.host)")
}

// verify checks that every file of f holds its content.
func verify(t *testing.T, f Files) {
	t.Helper()
	for i := 0; i < f.N; i++ {
		b, err := os.ReadFile(f.Path(i))
		if err != nil || !bytes.Equal(b, []byte(f.Content(i))) {
			t.Fatalf("%s: %q, %v; want %q", f.Path(i), b, err, f.Content(i))
		}
	}
}

func run(t *testing.T, env []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(argv[0] == "puppet" && errors.As(err, &ee) && ee.ExitCode() == 2) {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// TestFilesShell: the floor's script creates the tree, changes nothing on a
// second run, and repairs an edited and a removed file.
func TestFilesShell(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		skip.OrFail(t, "no bash: %v", err)
	}
	dir := t.TempDir()
	f := Files{Root: filepath.Join(dir, "tree"), N: 150}
	script := filepath.Join(dir, "converge.sh")
	if err := os.WriteFile(script, f.Shell(), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "bash", script)
	verify(t, f)
	st, _ := os.Stat(f.Path(7))
	old := time.Now().Add(-time.Hour)
	os.Chtimes(f.Path(7), old, old)
	run(t, nil, "bash", script)
	if st2, _ := os.Stat(f.Path(7)); !st2.ModTime().Equal(old) {
		t.Errorf("a second run rewrote %s (mtime %v, was %v)", f.Path(7), st2.ModTime(), st.ModTime())
	}
	os.WriteFile(f.Path(3), []byte("edited\n"), 0o644)
	os.Remove(f.Path(140))
	run(t, nil, "bash", script)
	verify(t, f)
}

// TestExecsShell: the floor runs the chain beside the lone command.
func TestExecsShell(t *testing.T) {
	e := Execs{Sleep: "0.2"}
	dir := t.TempDir()
	script := filepath.Join(dir, "execs.sh")
	if err := os.WriteFile(script, e.Shell(), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run(t, nil, "sh", script)
	// Three sleeps in a row at least; the fourth ran beside them.
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Errorf("the chain took %v, less than three sleeps", d)
	}
}
