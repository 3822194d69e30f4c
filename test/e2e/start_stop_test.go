package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// A run that cannot start (the metrics address or an etcd port taken)
// exits 1, not 2 (kept for input to fix), and replaces the report with
// one that says why.
func TestStartFailureExitsOneWithReport(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	for _, tc := range []struct {
		name, graph string
		args        []string
	}{
		{"metrics address taken", "resources:\n  noop: [{name: n}]\n", []string{"--prometheus-listen", busy}},
		{"etcd port taken", hostGraph(dir, "a"), []string{"--client-urls", "http://" + busy,
			"--server-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			g := writeGraph(t, sub, tc.graph)
			report := filepath.Join(sub, "report.json")
			os.WriteFile(report, []byte(`{"result": "ok", "stale": true}`), 0o644)
			args := append([]string{"run", "--file", g, "--hostname", "a", "--prefix", filepath.Join(sub, "p"), "--report", report}, tc.args...)
			a := start(t, args...)
			if code := a.wait(t, 30*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, a.out.String())
			}
			var rep struct {
				Result, Error string
				Stale         bool
			}
			if err := json.Unmarshal([]byte(readFile(report)), &rep); err != nil || rep.Stale || rep.Result != "failed" ||
				!strings.Contains(rep.Error, "address already in use") {
				t.Fatalf("report %+v (%v)", rep, err)
			}
		})
	}
}

// SIGTERM ends the whole run, resources, metrics server and all, within
// 2 seconds: here a command that ignores SIGTERM (killed 0.5 s later) and
// a metrics client holding its connection open with half a request used
// to add up to more.
func TestStopBoundedWithMetricsClient(t *testing.T) {
	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	g := writeGraph(t, dir, fmt.Sprintf(`resources:
  exec:
  - name: stubborn
    cmd: /bin/sh -c "trap '' TERM; touch %s; sleep 30"
`, started))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := start(t, "run", "--file", g, "--prometheus-listen", addr)
	wait.For(t, 10*time.Second, "the command running", func() bool { _, err := os.Stat(started); return err == nil })
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // not a condition: lets the server read the half request
	began := time.Now()
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.wait(t, 10*time.Second)
	if took := time.Since(began); took > 2300*time.Millisecond {
		t.Fatalf("stopped %v after SIGTERM, want within 2 s:\n%s", took, a.out.String())
	}
}
