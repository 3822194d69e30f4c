package remote

import (
	"strings"
	"testing"
	"time"

	"github.com/mgmtconfig/mgmt/test/wait"
)

// TestRemoteLinkCutDuringRun: the link to one host goes silent while its
// run is under way (no FIN, no RST: what a host that loses power or a cut
// cable looks like). The keepalive cuts that host off, its cleanup does
// not wait on the dead link, and the other host's run completes.
func TestRemoteLinkCutDuringRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3*time.Minute)
	a, b := e.startHost("ra"), e.startHost("rb")
	e.trust(a, b)
	graph := e.writeGraph(`graph: slow
resources:
  exec:
  - name: slow
    cmd: sleep 8
`, nil)
	c := e.cmd(e.ctx, graph, "--remote", a.target("root"), "--remote", b.target("root"), "--converged-timeout", "1")
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 60*time.Second, "the run on rb", func() bool { return b.remoteProcs() != "" })
	got := e.cutLink(t, b, c, &out, 40*time.Second)
	mustContain(t, got, "remote "+b.h.Addr()+": FAILED: "+b.h.Addr()+": run failed", "connection lost",
		"remote "+a.h.Addr()+": ok", "remote: 2 hosts, 1 ok, 1 failed")
	a.noLeftovers(t)
}
