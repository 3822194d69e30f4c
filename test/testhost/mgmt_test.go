package testhost

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// TestMgmtInHost runs the mgmt binary inside a host: it creates a file,
// repairs it after a deletion, and stops on SIGTERM; the real machine never
// sees the file.
func TestMgmtInHost(t *testing.T) {
	h := StartT(t, Options{})
	mgmt := InstallMgmt(t, h)
	const target = "/etc/mgmt-testhost-e2e"
	graph := `graph: e2e
resources:
  file:
  - name: f
    path: ` + target + `
    content: "managed\n"
`
	if err := h.WriteFile("/root/graph.yaml", []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := h.Spawn(testCtx(t, time.Minute), mgmt, "run", "--file", "/root/graph.yaml", "--no-watch")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(5 * time.Second)
	managed := func() bool {
		b, err := h.ReadFile(target)
		return err == nil && string(b) == "managed\n"
	}
	wait.Until(t, 30*time.Second, managed, func() string { return "mgmt did not create the file:\n" + p.Output() })
	if err := h.Remove(target); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 30*time.Second, managed, func() string { return "mgmt did not repair the file:\n" + p.Output() })
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("mgmt on SIGTERM: %v\n%s", err, p.Output())
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s on the real machine: %v", target, err)
	}
}
