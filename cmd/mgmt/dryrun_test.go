package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// A graph under dir: a file with content to write, and an exec whose
// marker shows whether it ran.
func dryGraph(t *testing.T, dir string) string {
	t.Helper()
	g := fmt.Sprintf(`resources:
  file:
  - name: motd
    path: %[1]s/motd
    content: "hello\nworld\n"
  exec:
  - name: mark
    cmd: touch %[1]s/ran
    creates: %[1]s/ran
`, dir)
	return writeGraph(t, dir, g)
}

func TestDetailedExitCodes(t *testing.T) {
	dir := t.TempDir()
	g := dryGraph(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "motd"), []byte("hello\nthere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	base := []string{"run", "--file", g, "--converged-timeout=0", "--no-watch", "--prefix", dir, "--hostname", "h"}

	code, out := capture(t, append(base, "--noop", "--detailed-exitcodes", "--report", report)...)
	if code != exitChanges {
		t.Fatalf("noop with changes pending: exit %d, want %d:\n%s", code, exitChanges, out)
	}
	for _, want := range []string{
		`msg="would change" res=file[motd] property=content from="12 bytes, sha256 `,
		"--- " + dir + "/motd\n+++ " + dir + "/motd (wanted)\n@@ -1,2 +1,2 @@\n hello\n-there\n+world\n",
		`msg="would change" res=exec[mark] property=cmd to="touch ` + dir + `/ran" why="creates ` + dir + `/ran is missing"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "motd")); string(b) != "hello\nthere\n" {
		t.Errorf("noop wrote the file: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("noop ran the command")
	}
	var rep struct {
		Noop    bool `json:"noop"`
		Pending int  `json:"pending"`
		Res     []struct {
			Res        string `json:"res"`
			Noop       bool   `json:"noop"`
			Pending    bool   `json:"pending"`
			Properties []struct {
				Property, Diff string
			} `json:"properties"`
		} `json:"resources"`
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Noop || rep.Pending != 2 || len(rep.Res) != 2 || !rep.Res[1].Noop || !rep.Res[1].Pending ||
		rep.Res[1].Properties[0].Property != "content" || !strings.Contains(rep.Res[1].Properties[0].Diff, "+world\n") {
		t.Errorf("report:\n%s", data)
	}

	if code, out := capture(t, append(base, "--noop")...); code != exitOK {
		t.Errorf("noop without --detailed-exitcodes: exit %d, want 0:\n%s", code, out)
	}
	if code, out := capture(t, append(base, "--detailed-exitcodes")...); code != exitChanges {
		t.Errorf("a run that changed something: exit %d, want %d:\n%s", code, exitChanges, out)
	}
	if code, out := capture(t, append(base, "--noop", "--detailed-exitcodes")...); code != exitOK {
		t.Errorf("noop with nothing to do: exit %d, want 0:\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("resources: {file: [{name: x, path: relative}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := capture(t, "run", "--file", bad, "--noop", "--converged-timeout=0", "--detailed-exitcodes", "--prefix", dir); code != exitInvalid {
		t.Errorf("invalid graph: exit %d, want %d:\n%s", code, exitInvalid, out)
	}
	failing := filepath.Join(dir, "fail.yaml")
	if err := os.WriteFile(failing, []byte("resources: {exec: [{name: x, cmd: \"false\", meta: {retry: 0}}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := capture(t, "run", "--file", failing, "--converged-timeout=0", "--detailed-exitcodes", "--prefix", dir); code != exitFailed {
		t.Errorf("failed run: exit %d, want %d:\n%s", code, exitFailed, out)
	}
}

// A planted secret in a sensitive file's content and a sensitive exec's
// command, environment and output never appears on stdout, stderr, in the
// report or on the metrics page, in a noop run and in a real one.
func TestSecretsNeverShown(t *testing.T) {
	const secret = "s3cr3t-PLANTED-7f1c"
	dir := t.TempDir()
	g := fmt.Sprintf(`resources:
  file:
  - name: key
    path: %[1]s/key
    content: "token=%[2]s\n"
    meta: {sensitive: true}
  exec:
  - name: login
    cmd: sh -c 'echo %[2]s; echo %[2]s >&2; exit 3'
    meta: {sensitive: true, retry: 0}
`, dir, secret)
	gp := filepath.Join(dir, "g.yaml")
	if err := os.WriteFile(gp, []byte(g), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("token=old-"+secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, noop := range []bool{true, false} {
		report := filepath.Join(dir, "report.json")
		addr := freeAddr(t)
		args := []string{"run", "--file", gp, "--converged-timeout=2", "--no-watch", "--prefix", dir, "--hostname", "h",
			"--report", report, "--log-level", "debug", "--prometheus-listen", addr}
		if noop {
			args = append(args, "--noop")
		}
		page := make(chan string, 1)
		go func() {
			var body string
			wait.For(t, 10*time.Second, "the metrics page to count checks", func() bool {
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return strings.Contains(body, `mgmt_checks_total{kind="exec"} 1`)
			})
			page <- body
		}()
		code, out := capture(t, args...)
		metrics := <-page
		data, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		for what, s := range map[string]string{"stdout and stderr": out, "report": string(data), "metrics page": metrics} {
			if strings.Contains(s, secret) {
				t.Errorf("noop=%v: the secret is in the %s:\n%s", noop, what, s)
			}
		}
		if !strings.Contains(out, "res=file[key] property=content from=sha256:") {
			t.Errorf("noop=%v: no masked change of the file:\n%s", noop, out)
		}
		if !noop && (code != exitFailed || !strings.Contains(out, "error withheld: the resource is sensitive")) {
			t.Errorf("real run: exit %d, want %d with the error withheld:\n%s", code, exitFailed, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "key")); string(b) != "token="+secret+"\n" {
		t.Errorf("the real run did not write the file: %q", b)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
