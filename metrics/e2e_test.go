package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// `mgmt run --prometheus-listen` serves the metrics of the run it is part
// of, and stops serving when the run ends.
func TestMgmtRunServesMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the mgmt binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mgmt")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/mgmt").CombinedOutput(); err != nil {
		t.Fatalf("build mgmt: %v\n%s", err, out)
	}
	graph := filepath.Join(dir, "graph.yaml")
	if err := os.WriteFile(graph, fmt.Appendf(nil, `resources:
  noop:
  - name: a
  file:
  - name: f
    path: %s/f
    content: hello
`, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "run", "--file", graph, "--prefix", filepath.Join(dir, "state"),
		"--no-watch", "--prometheus-listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The log names the URL; then the graph converges.
	urlRE := regexp.MustCompile(`url=(http://\S+/metrics)`)
	convergedRE := regexp.MustCompile(`msg="graph converged"`)
	var url string
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := urlRE.FindStringSubmatch(lines.Text()); m != nil {
			url = m[1]
		}
		if convergedRE.MatchString(lines.Text()) {
			break
		}
	}
	if url == "" {
		t.Fatal("mgmt did not log where it serves metrics, or never converged")
	}
	go func() { // keep draining the log
		for lines.Scan() {
		}
	}()
	fams := scrape(t, url)
	for _, c := range []struct {
		name, kind string
		want       float64
	}{
		{"mgmt_changes_total", "file", 1},
		{"mgmt_checks_total", "noop", 1},
		{"mgmt_failures_total", "file", 0},
		{"mgmt_converged", "", 1},
	} {
		if got := value(t, fams, c.name, c.kind); got != c.want {
			t.Errorf("%s{kind=%q} = %v, want %v", c.name, c.kind, got, c.want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("mgmt run, stopped by SIGTERM: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	if _, err := http.Get(url); err == nil {
		t.Fatal("metrics still served after mgmt exited")
	}
}
