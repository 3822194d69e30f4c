package svc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mgmtconfig/mgmt/resources/file" // the examples write unit and config files
	"github.com/mgmtconfig/mgmt/test/testhost"
	"github.com/mgmtconfig/mgmt/yamlgraph"
)

// The svc examples are valid graphs; run by the mgmt binary in a host,
// each converges and exits (--converged-timeout) with all its services
// running and enabled as declared.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/svc*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples/svc*.yaml")
	}
	type want struct{ unit, state, startup string }
	var wants [][]want
	for _, f := range files {
		g, err := yamlgraph.ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var w []want
		for _, v := range g.Vertices {
			if r, ok := v.Res.(*Svc); ok {
				w = append(w, want{r.Unit(), r.State, r.Startup})
			}
		}
		if len(w) == 0 {
			t.Errorf("%s has no svc resource", f)
		}
		wants = append(wants, w)
	}
	testhost.Require(t)
	if testing.Short() {
		return
	}
	for i, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			h := testhost.StartT(t, testhost.Options{})
			e := &host{t: t, h: h}
			mgmt := installMgmt(t, h)
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.WriteFile("/root/graph.yaml", data, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := e.ctx()
			p, err := h.Spawn(ctx, mgmt, "run", "--file", "/root/graph.yaml", "--converged-timeout", "1",
				"--client-urls", "http://127.0.0.1:12379", "--server-urls", "http://127.0.0.1:12380")
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
				if err := p.Wait(); err != nil {
					t.Fatalf("mgmt: %v\n%s", err, p.Output())
				}
			case <-time.After(30 * time.Second):
				p.Stop(5 * time.Second)
				t.Fatalf("mgmt did not converge and exit:\n%s", p.Output())
			}
			for _, w := range wants[i] {
				active, enabled := e.systemctl("is-active", w.unit), e.systemctl("is-enabled", w.unit)
				if w.state == StateRunning && active != "active" || w.state == StateStopped && active == "active" {
					t.Errorf("%s is %s, want %s", w.unit, active, w.state)
				}
				if w.startup != "" && enabled != w.startup {
					t.Errorf("%s is %s, want %s", w.unit, enabled, w.startup)
				}
				if w.state == StateRunning {
					if log := e.run("journalctl", "--no-pager", "-o", "cat", "-u", w.unit); !strings.Contains(log, "started") {
						t.Errorf("%s's journal:\n%s", w.unit, log)
					}
				}
			}
		})
	}
}
