package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mgmtconfig/mgmt/quote"
)

// capture runs the command line and returns its exit status and what it
// wrote to stdout and stderr.
func capture(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, out
	code := run(args)
	os.Stdout, os.Stderr = stdout, stderr
	data, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(data)
}

// writeGraph writes the graph text to dir/g.yaml and returns its path.
func writeGraph(t *testing.T, dir, text string) string {
	t.Helper()
	g := filepath.Join(dir, "g.yaml")
	if err := os.WriteFile(g, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// runOnce runs the graph file g once (mgmt run --converged-timeout=0
// --no-watch as host h, its prefix in dir), with flags after --file, and
// returns its exit status, its output and the path of the report it was
// told to write (dir/report.json).
func runOnce(t *testing.T, dir, g string, flags ...string) (code int, out, report string) {
	t.Helper()
	report = filepath.Join(dir, "report.json")
	args := append([]string{"run", "--file", g}, flags...)
	args = append(args, "--converged-timeout=0", "--no-watch",
		"--prefix", filepath.Join(dir, "prefix"), "--hostname", "h", "--report", report)
	code, out = capture(t, args...)
	return code, out, report
}

// readReport decodes the run report at path into rep and returns its text.
func readReport(t *testing.T, path string, rep any) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, rep); err != nil {
		t.Fatalf("report: %v\n%s", err, data)
	}
	return data
}

// validate prints no character that reorders or hides text: not from the
// graph's names and values (quoted by the messages), not from the file
// name given on the command line.
func TestValidateEscapesInvisibleText(t *testing.T) {
	code, out := capture(t, "validate", "--file", "../../yamlgraph/testdata/bad/names-invisible.yaml")
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d: %s", code, exitInvalid, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if i, r := quote.Find(line); i >= 0 {
			t.Fatalf("printed %U raw: %s", r, quote.String(line))
		}
	}
	if !strings.Contains(out, `"invoice\u202efdp.exe"`) {
		t.Fatalf("the name is not shown escaped: %s", out)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "graph\u202elmay.yaml")
	if err := os.WriteFile(file, []byte("resources: {noop: [{name: a}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = capture(t, "validate", "--file", file)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	if want := dir + `/graph\u202elmay.yaml: valid: 1 resources, 0 edges` + "\n"; out != want {
		t.Fatalf("printed %s, want %s", quote.String(out), quote.String(want))
	}
}
